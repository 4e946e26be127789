// Package lifecycle decides a Tenant's exit: from (spec, status, observed facts, now) it returns the phase the
// tenant is in and the one step to carry out next. It reads no clock and no client; the exit controller gathers
// the facts, records the decision in status, carries the step out, and asks again.
//
//	Active ──(now ≥ contract.end)──► Terminating: suspend (database LOGIN revoked, sessions ended, network
//	                                 cut, workloads scaled to zero)
//	  → Exporting (dataReturn Export): request a DataExport; wait until the receiver acknowledges it or
//	                                 acknowledgeTimeout passes after delivery
//	  (both wait, after the suspension, until endObservedAt + exitGracePeriod; removing contract.end or moving
//	  it later until then cancels the exit: CancelExit hands the tenant back to provisioning)
//	  → Purging: drop the database, its role, the Secrets and the namespaces, verified
//	  → AwaitingBackupExpiry: Shred destroys every repository at once; Expire waits until the newest snapshot
//	                                 is keepWithin old, then removes what is left
//	  → Destroyed: every location verified gone, the exit's bag too; the certificate is signed
//
// Nothing is destroyed before an export that was asked for is acknowledged or its acknowledgeTimeout passed, nor
// before the grace period (the policy's exitGracePeriod, counted from when the end was first observed) is over; a
// legal hold freezes every destructive step (suspension and the export are not destructive and go on). Until the
// live data is purged (phases Terminating and Exporting), removing contract.end or moving it into the future
// cancels the exit: the tenant goes back to provisioning. The certificate of destruction is signed only once every
// copy is gone, the exit's bag on the export volume included.
package lifecycle

import (
	"fmt"
	"time"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
)

// Action is the step the controller carries out next.
type Action string

// Actions, in the order an exit runs them.
const (
	// Wait: nothing to do until RequeueAfter or a new fact.
	Wait Action = ""
	// Suspend revokes LOGIN, ends sessions, cuts the network and scales workloads to zero, and verifies it.
	Suspend Action = "Suspend"
	// RequestExport creates the exit's DataExport.
	RequestExport Action = "RequestExport"
	// Purge drops the database and role, deletes the Secrets, then the namespaces, and verifies each.
	Purge Action = "Purge"
	// DisposeBackups destroys every backup repository of the tenant and its keys, verified.
	DisposeBackups Action = "DisposeBackups"
	// IssueCertificate signs and writes the DestructionCertificate.
	IssueCertificate Action = "IssueCertificate"
	// CancelExit ends an exit that destroyed nothing (contract.end removed or moved into the future): the exit's
	// status is cleared and the tenant goes back to provisioning, which gives LOGIN, policies and bindings back.
	CancelExit Action = "CancelExit"
)

// ExportFacts is what the exit's DataExport says.
type ExportFacts struct {
	// Exists: the DataExport named in status.exit.exportRef exists.
	Exists bool
	// Phase of the DataExport.
	Phase custosv1alpha1.DataExportPhase
	// DeliveredAt is when the bag was complete at its location (zero before).
	DeliveredAt time.Time
	// ReceiptMismatch: a receipt was given and does not match the bag.
	ReceiptMismatch bool
	// Message explains a failure.
	Message string
	// Refused, when set, says why the DataExport found where the exit's export should be is not this exit's
	// (another tenant's UID, made by hand, made before this exit, without the database): nothing is destroyed on
	// its strength.
	Refused string
	// ExpiresAt is when the exit's bag is due to be deleted (zero: not known yet).
	ExpiresAt time.Time
	// BagGone: the exit's bag was deleted and verified gone (the DataExport is Expired and the file is absent).
	BagGone bool
}

// Facts is what the controller observed outside the Tenant object.
type Facts struct {
	// Suspended: LOGIN revoked, no session left, network cut and workloads at zero, all verified.
	Suspended bool
	// Export is the exit's DataExport (only read when dataReturn is Export).
	Export ExportFacts
	// AcknowledgeTimeout is the policy's export.acknowledgeTimeout (0: wait for a receipt forever).
	AcknowledgeTimeout time.Duration
	// GracePeriod is the policy's exitGracePeriod: nothing is destroyed before the end was observed this long ago.
	GracePeriod time.Duration
	// LiveDataGone: database (by OID), role, Secrets and namespaces verified gone.
	LiveDataGone bool
	// KeepWithin is the policy's retention window.
	KeepWithin time.Duration
	// NewestSnapshot is the newest snapshot in any location (zero: none was ever taken).
	NewestSnapshot time.Time
	// RepositoriesGone: every repository of the tenant verified absent and its keys deleted.
	RepositoriesGone bool
	// CertificateIssued: the DestructionCertificate exists.
	CertificateIssued bool
}

// Decision is the outcome of Next.
type Decision struct {
	// Phase the tenant is in now; the controller records it before carrying out Action.
	Phase custosv1alpha1.TenantPhase
	// Action to carry out now (Wait: none).
	Action Action
	// Reason and Message explain the decision to a person.
	Reason, Message string
	// Frozen: a legal hold stops a destructive step.
	Frozen bool
	// RequeueAfter asks to be called again this soon even without a new fact (0: no timer needed).
	RequeueAfter time.Duration
	// BackupsGoneBy is the date by which the last backup copy is gone (set from Purging on).
	BackupsGoneBy time.Time
	// AcknowledgeTimedOut: the exit goes on without a receipt because acknowledgeTimeout passed.
	AcknowledgeTimedOut bool
	// DestructionNotBefore is the end of the grace period (set once the exit started).
	DestructionNotBefore time.Time
}

// GraceStart is when the exit's grace period began: when the end was first observed (status.exit.endObservedAt),
// or now when it is observed for the first time. A contract.end in the past therefore starts the grace period now,
// not at the end date.
func GraceStart(status custosv1alpha1.TenantStatus, now time.Time) time.Time {
	if ex := status.Exit; ex != nil {
		if ex.EndObservedAt != nil {
			return ex.EndObservedAt.Time
		}
		if ex.TerminatedAt != nil {
			return ex.TerminatedAt.Time
		}
	}
	return now
}

// DestructionNotBefore is the end of the grace period.
func DestructionNotBefore(status custosv1alpha1.TenantStatus, f Facts, now time.Time) time.Time {
	return GraceStart(status, now).Add(max(f.GracePeriod, 0))
}

// NothingDestroyed reports whether the exit has not begun to destroy: no purge and no disposal started, no
// location recorded as destroyed, and the phase is before Purging. Only then can the exit be cancelled.
func NothingDestroyed(status custosv1alpha1.TenantStatus) bool {
	if status.Phase != custosv1alpha1.TenantTerminating && status.Phase != custosv1alpha1.TenantExporting {
		return false
	}
	ex := status.Exit
	return ex == nil || (ex.LiveDataPurgedAt == nil && ex.DisposalStartedAt == nil && len(ex.Destroyed) == 0)
}

// HoldActive reports whether a legal hold applies at now.
func HoldActive(h *custosv1alpha1.LegalHold, now time.Time) bool {
	return h != nil && (h.Until == nil || now.Before(h.Until.Time))
}

// Ended reports whether the contract has ended at now.
func Ended(spec custosv1alpha1.TenantSpec, now time.Time) bool {
	return spec.Contract.End != nil && !now.Before(spec.Contract.End.Time)
}

// BackupsGoneBy is the date by which every backup of a tenant that takes no new snapshots is gone: the newest
// snapshot plus the retention window for Expire; now for Shred (the repositories are destroyed at once); now when
// there never was a snapshot.
func BackupsGoneBy(exit custosv1alpha1.TenantExit, f Facts, now time.Time) time.Time {
	if exit.Backups == custosv1alpha1.BackupDisposalShred || f.NewestSnapshot.IsZero() {
		return now
	}
	return f.NewestSnapshot.Add(f.KeepWithin)
}

// maxWait bounds a timer so that a changed clock or a missed event is noticed within a day.
const maxWait = 24 * time.Hour

func wait(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Second
	}
	return min(d, maxWait)
}

// Next decides the tenant's phase and next step.
func Next(spec custosv1alpha1.TenantSpec, status custosv1alpha1.TenantStatus, f Facts, now time.Time) Decision {
	d := next(spec, status, f, now)
	if d.Phase.ExitStarted() {
		d.DestructionNotBefore = DestructionNotBefore(status, f, now)
	}
	return d
}

// graceOver is nil when the grace period has passed; otherwise the decision to wait in phase.
func graceOver(phase custosv1alpha1.TenantPhase, status custosv1alpha1.TenantStatus, f Facts, now time.Time, what string) *Decision {
	notBefore := DestructionNotBefore(status, f, now)
	if !now.Before(notBefore) {
		return nil
	}
	return &Decision{Phase: phase, Reason: custosv1alpha1.ReasonGracePeriod, RequeueAfter: wait(notBefore.Sub(now)),
		Message: fmt.Sprintf("%s; nothing is destroyed before %s (the policy's exitGracePeriod, counted from when the end was observed). Removing spec.contract.end, or moving it into the future, before then cancels the exit and returns the tenant to Active",
			what, notBefore.UTC().Format(time.RFC3339))}
}

func next(spec custosv1alpha1.TenantSpec, status custosv1alpha1.TenantStatus, f Facts, now time.Time) Decision {
	phase := status.Phase
	if NothingDestroyed(status) && !Ended(spec, now) {
		return Decision{Phase: phase, Action: CancelExit, Reason: custosv1alpha1.ReasonExitCancelled,
			Message: "spec.contract.end was removed or moved into the future before anything was destroyed: the exit is cancelled and the tenant returns to Active (provisioning gives LOGIN, network policies and bindings back; workloads stay scaled to zero until their owners scale them up)"}
	}
	if !phase.ExitStarted() {
		if !Ended(spec, now) {
			d := Decision{Phase: phase, Reason: custosv1alpha1.ReasonContractRunning, Message: "the contract runs; the exit starts at contract.end"}
			if spec.Contract.End != nil {
				d.RequeueAfter = wait(spec.Contract.End.Sub(now))
				d.Message = fmt.Sprintf("the contract runs until %s; the exit starts then", spec.Contract.End.UTC().Format(time.RFC3339))
			}
			return d
		}
		phase = custosv1alpha1.TenantTerminating
	}
	switch phase {
	case custosv1alpha1.TenantTerminating:
		if !f.Suspended {
			return Decision{Phase: phase, Action: Suspend, Reason: custosv1alpha1.ReasonContractEnded,
				Message: "the contract ended: suspending the tenant (database LOGIN revoked, sessions ended, network cut, workloads scaled to zero)"}
		}
		if spec.Exit.DataReturn == custosv1alpha1.DataReturnExport {
			return next(spec, withPhase(status, custosv1alpha1.TenantExporting), f, now)
		}
		if d := graceOver(phase, status, f, now, "the tenant is suspended"); d != nil {
			return *d
		}
		return next(spec, withPhase(status, custosv1alpha1.TenantPurging), f, now)
	case custosv1alpha1.TenantExporting:
		return exporting(spec, status, f, now)
	case custosv1alpha1.TenantPurging:
		if HoldActive(spec.LegalHold, now) {
			return frozen(phase, spec.LegalHold, now, "purging the live data")
		}
		if !f.LiveDataGone {
			return Decision{Phase: phase, Action: Purge, Reason: custosv1alpha1.ReasonPurging, BackupsGoneBy: BackupsGoneBy(spec.Exit, f, now),
				Message: "dropping the database and its role, deleting the Secrets and the namespaces"}
		}
		return next(spec, withPhase(status, custosv1alpha1.TenantAwaitingBackupExpiry), f, now)
	case custosv1alpha1.TenantAwaitingBackupExpiry:
		goneBy := BackupsGoneBy(spec.Exit, f, now)
		if status.Exit != nil && status.Exit.BackupsGoneBy != nil && spec.Exit.Backups != custosv1alpha1.BackupDisposalShred {
			// The deadline was fixed when the live data went; a snapshot seen later cannot move it.
			goneBy = status.Exit.BackupsGoneBy.Time
		}
		if !f.RepositoriesGone {
			if HoldActive(spec.LegalHold, now) {
				d := frozen(phase, spec.LegalHold, now, "removing the backups")
				d.BackupsGoneBy = goneBy
				return d
			}
			if spec.Exit.Backups != custosv1alpha1.BackupDisposalShred && now.Before(goneBy) {
				return Decision{Phase: phase, Reason: custosv1alpha1.ReasonAwaitingExpiry, BackupsGoneBy: goneBy, RequeueAfter: wait(goneBy.Sub(now)),
					Message: fmt.Sprintf("the live data is gone; the backups expire and the last copy is removed by %s", goneBy.UTC().Format(time.RFC3339))}
			}
			return Decision{Phase: phase, Action: DisposeBackups, Reason: custosv1alpha1.ReasonShredding, BackupsGoneBy: goneBy,
				Message: "destroying every backup repository of the tenant and its keys"}
		}
		if !f.CertificateIssued && status.Exit != nil && status.Exit.ExportRef != nil && !f.Export.BagGone {
			d := Decision{Phase: phase, Reason: custosv1alpha1.ReasonAwaitingBagExpiry, BackupsGoneBy: goneBy,
				Message: fmt.Sprintf("every backup is gone, but the exit's bag (DataExport %s), a full copy of the data, is still on the export volume", status.Exit.ExportRef.Name)}
			if !f.Export.ExpiresAt.IsZero() {
				d.Message += " until " + f.Export.ExpiresAt.UTC().Format(time.RFC3339) + " (expireAfterDelivery, counted from the receipt)"
				d.RequeueAfter = wait(f.Export.ExpiresAt.Sub(now))
			}
			d.Message += ": the certificate of destruction is signed once it is deleted and verified gone"
			return d
		}
		if !f.CertificateIssued {
			return Decision{Phase: phase, Action: IssueCertificate, Reason: custosv1alpha1.ReasonCertifying, BackupsGoneBy: goneBy,
				Message: "every location is verified empty: signing the certificate of destruction"}
		}
		return next(spec, withPhase(status, custosv1alpha1.TenantDestroyed), f, now)
	case custosv1alpha1.TenantDestroyed:
		return Decision{Phase: phase, Reason: custosv1alpha1.ReasonDestroyed, Message: "the tenant's data is destroyed and the certificate is issued"}
	}
	return Decision{Phase: phase, Reason: "UnknownPhase", Message: fmt.Sprintf("phase %q is not known to this version of custos", phase)}
}

func exporting(spec custosv1alpha1.TenantSpec, status custosv1alpha1.TenantStatus, f Facts, now time.Time) Decision {
	phase := custosv1alpha1.TenantExporting
	ex := f.Export
	acknowledged := status.Exit != nil && status.Exit.ExportAcknowledgedAt != nil
	if !acknowledged {
		if ex.Refused != "" {
			return Decision{Phase: phase, Reason: custosv1alpha1.ReasonExportNotBound, Message: ex.Refused}
		}
		if !ex.Exists {
			return Decision{Phase: phase, Action: RequestExport, Reason: custosv1alpha1.ReasonAwaitingExport,
				Message: "requesting the DataExport the data controller chose (exit.dataReturn: Export)"}
		}
		switch {
		case ex.Phase == custosv1alpha1.ExportAcknowledged:
			acknowledged = true
		case ex.ReceiptMismatch:
			return Decision{Phase: phase, Reason: custosv1alpha1.ReasonReceiptMismatch, RequeueAfter: ackTimer(f, now),
				Message: "the receipt's sha256 does not match the bag: nothing is destroyed; fetch and check the bag again, then correct the receipt (create a new DataExport if the bag is damaged)"}
		case ex.Phase == custosv1alpha1.ExportFailed:
			return Decision{Phase: phase, Reason: custosv1alpha1.ReasonExportFailed,
				Message: "the export failed, nothing is destroyed: " + ex.Message}
		case ex.DeliveredAt.IsZero():
			return Decision{Phase: phase, Reason: custosv1alpha1.ReasonAwaitingExport, Message: "the export is being written; nothing is destroyed before it is acknowledged"}
		case f.AcknowledgeTimeout > 0 && !now.Before(ex.DeliveredAt.Add(f.AcknowledgeTimeout)):
			d := graceOver(phase, status, f, now, "no receipt came within acknowledgeTimeout after delivery")
			if d == nil {
				nd := next(spec, withPhase(status, custosv1alpha1.TenantPurging), f, now)
				d = &nd
			}
			d.AcknowledgeTimedOut = true
			return *d
		default:
			msg := "the export is delivered; waiting for the receiver's receipt (spec.receipt.sha256 on the DataExport)"
			if f.AcknowledgeTimeout > 0 {
				msg += fmt.Sprintf("; without one the exit goes on at %s", ex.DeliveredAt.Add(f.AcknowledgeTimeout).UTC().Format(time.RFC3339))
			}
			return Decision{Phase: phase, Reason: custosv1alpha1.ReasonAwaitingReceipt, RequeueAfter: ackTimer(f, now), Message: msg}
		}
	}
	if d := graceOver(phase, status, f, now, "the export is acknowledged"); d != nil {
		return *d
	}
	return next(spec, withPhase(status, custosv1alpha1.TenantPurging), f, now)
}

func ackTimer(f Facts, now time.Time) time.Duration {
	if f.AcknowledgeTimeout <= 0 || f.Export.DeliveredAt.IsZero() {
		return 0
	}
	return wait(f.Export.DeliveredAt.Add(f.AcknowledgeTimeout).Sub(now))
}

func frozen(phase custosv1alpha1.TenantPhase, h *custosv1alpha1.LegalHold, now time.Time, what string) Decision {
	d := Decision{Phase: phase, Reason: custosv1alpha1.ReasonLegalHoldActive, Frozen: true,
		Message: fmt.Sprintf("a legal hold (%s) freezes the exit before %s", h.Reason, what)}
	if h.Until != nil {
		d.Message += "; it ends " + h.Until.UTC().Format(time.RFC3339)
		d.RequeueAfter = wait(h.Until.Sub(now))
	}
	return d
}

func withPhase(s custosv1alpha1.TenantStatus, p custosv1alpha1.TenantPhase) custosv1alpha1.TenantStatus {
	s.Phase = p
	return s
}
