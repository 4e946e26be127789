package evidence

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// complete is a statement CheckComplete accepts: a database, a namespace, a key Secret and two repositories.
func complete() Statement {
	exp := ExportEvidence{Name: "export/clinic-2026-03-31.tar", SHA256: digest("bag"), Bytes: 123456,
		AcknowledgedAt: at("2026-04-01T09:00:00Z"), ReceivedBy: "j.jansen@clinic.example"}
	loc := func(kind, id, where, method, technique, tool, ver, start, end, vmethod, detail string) Location {
		return Location{Kind: kind, Identifier: id, Location: where, Jurisdiction: "EEA", Method: method,
			Technique: technique, Tool: Tool{Name: tool, Version: ver}, StartedAt: at(start), CompletedAt: at(end),
			Verification: Verification{Method: vmethod, Result: ResultVerified, Detail: detail}}
	}
	return Statement{
		Subject: []Subject{ExportSubject(exp), {Name: "inventory.json", Digest: map[string]string{"sha256": digest("inventory")}}},
		Predicate: Destruction{
			Tenant:         Tenant{Name: "clinic", UID: "0b6f3c2e-5d1a-4d8e-9b1f-2f6a7c8d9e01", DisplayName: "Clinic <B.V.> & Co"},
			Contract:       Contract{ID: "VO-2024-017", Start: at("2024-01-01T00:00:00Z"), End: at("2026-03-31T00:00:00Z")},
			DataController: DataController{Name: "Clinic B.V.", Contact: "J. Jansen", Email: "j.jansen@clinic.example"},
			Processor:      Processor{Name: "Hosting B.V."},
			Export:         &exp,
			Locations: []Location{
				loc(KindDatabase, "tenant_clinic (OID 16384)", "pg-ams-1", MethodClear, "DROP DATABASE WITH (FORCE)",
					"PostgreSQL", "15.6", "2026-04-01T10:00:00Z", "2026-04-01T10:00:02Z",
					"pg_database has no row with OID 16384", ""),
				loc(KindNamespace, "clinic (UID 4c1d…)", "", MethodClear, "namespace deletion", "kube-apiserver", "v1.33.1",
					"2026-04-01T10:00:03Z", "2026-04-01T10:01:00Z", "GET namespace returns 404", ""),
				loc(KindRepository, "3f2a9c (rest:https://backup-ams.example/clinic-0b6f3c2e)", "ams", MethodPurge,
					"restic forget+prune, delete every object, delete key (cryptographic erase)", "restic", "0.18.1",
					"2026-04-01T10:02:00Z", "2026-04-01T10:05:00Z", "open exits 10; listing empty", "0 objects"),
			},
			Retained: []Retained{{What: "audit trail", Reason: "NEN 7513 logging obligation"}, {What: "this certificate", Reason: "proof of destruction"}},
			Audit:    AuditRef{Head: digest("head"), Length: 42},
			Notes:    []string{"backups shredded at once (exit.backups=Shred)"},
			IssuedAt: at("2026-04-01T10:06:00Z"),
		},
	}
}
