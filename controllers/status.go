package controllers

import (
	"context"
	"encoding/json"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// patchStatus is how every reconciler writes status.
//
//   - Nothing is written when the status did not change from base.
//   - Otherwise a merge patch from base goes to the status subresource, guarded by base's resourceVersion
//     (optimistic lock): a status written meanwhile, by another controller or one this reconcile's cache did not
//     show yet, is never overwritten.
//   - On a conflict, reapply (when given) copies the fields this controller owns from mine (what this reconcile
//     decided) onto fresh (the object read again from the API server), and the patch is tried again from fresh
//     (retry.DefaultBackoff). Without reapply the conflict is returned and the reconcile runs again on fresh data:
//     the choice of a controller whose decisions depend on fields others write.
//   - An object deleted meanwhile is not an error.
//
// obj holds what was written afterwards (after a reapply: fresh with this controller's fields).
func patchStatus[O any, T interface {
	*O
	client.Object
}](ctx context.Context, c client.Client, reader client.Reader, base, obj T, reapply func(fresh, mine T)) error {
	if changed, err := statusChanged(base, obj); err != nil || !changed {
		return err
	}
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		err := c.Status().Patch(ctx, obj, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
		if !apierrors.IsConflict(err) || reapply == nil {
			return err
		}
		fresh := T(new(O))
		if gerr := reader.Get(ctx, client.ObjectKeyFromObject(obj), fresh); gerr != nil {
			return gerr
		}
		mine := obj.DeepCopyObject().(T)
		base = fresh.DeepCopyObject().(T)
		reapply(fresh, mine)
		*obj = *fresh
		return err
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// statusChanged reports whether obj differs from base in anything but metadata (a reconciler changes only status).
func statusChanged(base, obj client.Object) (bool, error) {
	data, err := client.MergeFrom(base).Data(obj)
	if err != nil {
		return false, err
	}
	var patch map[string]json.RawMessage
	if err := json.Unmarshal(data, &patch); err != nil {
		return false, err
	}
	delete(patch, "metadata")
	return len(patch) > 0, nil
}
