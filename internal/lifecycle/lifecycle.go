// Package lifecycle decides a Tenant's exit: from (spec, status, observed facts, now) it returns the phase the
// tenant is in and the one step to carry out next. It reads no clock and no client; the exit controller gathers
// the facts, records the decision in status, carries the step out, and asks again.
//
//	Active ──(now ≥ contract.end)──► Terminating: suspend (database LOGIN revoked, sessions ended, network
//	                                 cut, workloads scaled to zero)
//	  → Exporting (dataReturn Export): request a DataExport; wait until the receiver acknowledges it or
//	                                 acknowledgeTimeout passes after delivery
//	  → Purging: drop the database, its role, the Secrets and the namespaces, verified
//	  → AwaitingBackupExpiry: Shred destroys every repository at once; Expire waits until the newest snapshot
//	                                 is keepWithin old, then removes what is left
//	  → Destroyed: every location verified gone; the certificate is signed
//
// Nothing is destroyed before an export that was asked for is acknowledged or its acknowledgeTimeout passed, and
// a legal hold freezes every destructive step (suspension and the export are not destructive and go on).
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
)

// Reasons a decision gives (they become the Ready condition's reason while the exit runs).
const (
	ReasonContractRunning    = "ContractRunning"
	ReasonContractEnded      = "ContractEnded"
	ReasonAwaitingExport     = "AwaitingExport"
	ReasonExportFailed       = "ExportFailed"
	ReasonReceiptMismatch    = "ReceiptMismatch"
	ReasonAwaitingReceipt    = "AwaitingReceipt"
	ReasonExportAcknowledged = "ExportAcknowledged"
	ReasonAcknowledgeTimeout = "AcknowledgeTimeout"
	ReasonLegalHold          = custosv1alpha1.ReasonLegalHoldActive
	ReasonPurging            = "PurgingLiveData"
	ReasonShredding          = "ShreddingBackups"
	ReasonAwaitingExpiry     = "AwaitingBackupExpiry"
	ReasonCertifying         = "IssuingCertificate"
	ReasonDestroyed          = "Destroyed"
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
}

// Facts is what the controller observed outside the Tenant object.
type Facts struct {
	// Suspended: LOGIN revoked, no session left, network cut and workloads at zero, all verified.
	Suspended bool
	// Export is the exit's DataExport (only read when dataReturn is Export).
	Export ExportFacts
	// AcknowledgeTimeout is the policy's export.acknowledgeTimeout (0: wait for a receipt forever).
	AcknowledgeTimeout time.Duration
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
	phase := status.Phase
	if !phase.ExitStarted() {
		if !Ended(spec, now) {
			d := Decision{Phase: phase, Reason: ReasonContractRunning, Message: "the contract runs; the exit starts at contract.end"}
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
			return Decision{Phase: phase, Action: Suspend, Reason: ReasonContractEnded,
				Message: "the contract ended: suspending the tenant (database LOGIN revoked, sessions ended, network cut, workloads scaled to zero)"}
		}
		if spec.Exit.DataReturn == custosv1alpha1.DataReturnExport {
			phase = custosv1alpha1.TenantExporting
		} else {
			phase = custosv1alpha1.TenantPurging
		}
		return Next(spec, withPhase(status, phase), f, now)
	case custosv1alpha1.TenantExporting:
		return exporting(spec, status, f, now)
	case custosv1alpha1.TenantPurging:
		if HoldActive(spec.LegalHold, now) {
			return frozen(phase, spec.LegalHold, now, "purging the live data")
		}
		if !f.LiveDataGone {
			return Decision{Phase: phase, Action: Purge, Reason: ReasonPurging, BackupsGoneBy: BackupsGoneBy(spec.Exit, f, now),
				Message: "dropping the database and its role, deleting the Secrets and the namespaces"}
		}
		return Next(spec, withPhase(status, custosv1alpha1.TenantAwaitingBackupExpiry), f, now)
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
				return Decision{Phase: phase, Reason: ReasonAwaitingExpiry, BackupsGoneBy: goneBy, RequeueAfter: wait(goneBy.Sub(now)),
					Message: fmt.Sprintf("the live data is gone; the backups expire and the last copy is removed by %s", goneBy.UTC().Format(time.RFC3339))}
			}
			return Decision{Phase: phase, Action: DisposeBackups, Reason: ReasonShredding, BackupsGoneBy: goneBy,
				Message: "destroying every backup repository of the tenant and its keys"}
		}
		if !f.CertificateIssued {
			return Decision{Phase: phase, Action: IssueCertificate, Reason: ReasonCertifying, BackupsGoneBy: goneBy,
				Message: "every location is verified empty: signing the certificate of destruction"}
		}
		return Next(spec, withPhase(status, custosv1alpha1.TenantDestroyed), f, now)
	case custosv1alpha1.TenantDestroyed:
		return Decision{Phase: phase, Reason: ReasonDestroyed, Message: "the tenant's data is destroyed and the certificate is issued"}
	}
	return Decision{Phase: phase, Reason: "UnknownPhase", Message: fmt.Sprintf("phase %q is not known to this version of custos", phase)}
}

func exporting(spec custosv1alpha1.TenantSpec, status custosv1alpha1.TenantStatus, f Facts, now time.Time) Decision {
	phase := custosv1alpha1.TenantExporting
	ex := f.Export
	acknowledged := status.Exit != nil && status.Exit.ExportAcknowledgedAt != nil
	if !acknowledged {
		if !ex.Exists {
			return Decision{Phase: phase, Action: RequestExport, Reason: ReasonAwaitingExport,
				Message: "requesting the DataExport the data controller chose (exit.dataReturn: Export)"}
		}
		switch {
		case ex.Phase == custosv1alpha1.ExportAcknowledged:
			acknowledged = true
		case ex.ReceiptMismatch:
			return Decision{Phase: phase, Reason: ReasonReceiptMismatch, RequeueAfter: ackTimer(f, now),
				Message: "the receipt's sha256 does not match the bag: nothing is destroyed; fetch and check the bag again, then correct the receipt (create a new DataExport if the bag is damaged)"}
		case ex.Phase == custosv1alpha1.ExportFailed:
			return Decision{Phase: phase, Reason: ReasonExportFailed,
				Message: "the export failed, nothing is destroyed: " + ex.Message}
		case ex.DeliveredAt.IsZero():
			return Decision{Phase: phase, Reason: ReasonAwaitingExport, Message: "the export is being written; nothing is destroyed before it is acknowledged"}
		case f.AcknowledgeTimeout > 0 && !now.Before(ex.DeliveredAt.Add(f.AcknowledgeTimeout)):
			d := Next(spec, withPhase(status, custosv1alpha1.TenantPurging), f, now)
			d.AcknowledgeTimedOut = true
			return d
		default:
			msg := "the export is delivered; waiting for the receiver's receipt (spec.receipt.sha256 on the DataExport)"
			if f.AcknowledgeTimeout > 0 {
				msg += fmt.Sprintf("; without one the exit goes on at %s", ex.DeliveredAt.Add(f.AcknowledgeTimeout).UTC().Format(time.RFC3339))
			}
			return Decision{Phase: phase, Reason: ReasonAwaitingReceipt, RequeueAfter: ackTimer(f, now), Message: msg}
		}
	}
	return Next(spec, withPhase(status, custosv1alpha1.TenantPurging), f, now)
}

func ackTimer(f Facts, now time.Time) time.Duration {
	if f.AcknowledgeTimeout <= 0 || f.Export.DeliveredAt.IsZero() {
		return 0
	}
	return wait(f.Export.DeliveredAt.Add(f.AcknowledgeTimeout).Sub(now))
}

func frozen(phase custosv1alpha1.TenantPhase, h *custosv1alpha1.LegalHold, now time.Time, what string) Decision {
	d := Decision{Phase: phase, Reason: ReasonLegalHold, Frozen: true,
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
