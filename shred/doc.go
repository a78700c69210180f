// Package shred is crypto-shredding for the event store: the personal
// fields of events are stored encrypted under a key per data subject (a
// customer, a person), and forgetting the subject deletes its key, after
// which every read of those fields gives a documented erased value.
//
// # Declaring personal data
//
// An event's schema declares its personal fields and the field naming its
// subject, as JSON Schema annotations or struct tags (package schema):
//
//	"customer": {"type": "string", "x-strata-subject": true},
//	"email":    {"type": "string", "x-strata-personal": true}
//
//	type OrderPlaced struct {
//		Customer string `json:"customer" strata:"subject"`
//		Email    string `json:"email" strata:"personal"`
//	}
//
// # Wiring
//
// A Shredder is both the store's Sealer and its Opener:
//
//	sh := shred.New(pool, &shred.Config{Schema: "strata", Registry: reg})
//	store := eventstore.New(pool, &eventstore.Config{Validator: reg, Sealer: sh, Opener: sh})
//
// Appends then seal each personal value (AES-256-GCM, crypto/aes and
// crypto/cipher, a random 12-byte nonce per value) under the subject's
// data key, made on first use and kept in the key table (migration 0050).
// A sealed value is a JSON string beginning with Prefix; its clear header
// names the subject, the key version and the event it was sealed for, and
// is authenticated with the field's JSON pointer, so a value cannot be
// moved to another field or event. Every read of the store (ReadStream,
// ReadAll, ReadLog, …) and every subscription opens the values again;
// subscriptions do it inside the handler's transaction with the subjects'
// key rows share-locked, so that a Forget waits for a batch that holds
// plaintext and the next batch reads the values erased.
//
// # Forgetting
//
// Forget (or projection.Runner.Forget, which also runs each projection's
// Forget in the same transaction, or `strata subject forget ID`) deletes
// the key and the snapshots of the subject's streams. From then on a
// personal string reads as schema.Erased ("[erased]") and any other
// personal value as null; nothing else of the event changes. Copies keep
// the ciphertext and are shredded with it: the outbox relay publishes
// events sealed (brokers and Strata's Pub/Sub hold ciphertext), the
// workflow inbox keeps them sealed.
//
// Metadata is stored in clear, so Seal refuses (ErrPersonalMetadata) an
// event whose metadata holds one of its personal values or a key named
// as one of its personal fields. A handler's error may quote what it was
// handed: subscriptions and the workflow inbox record it redacted
// (Redact), and a forget replaces the error text of the subject's
// streams' dead letters.
//
// Keys can be protected by a KMS through Wrapper (envelope encryption);
// the key table stays in Postgres so that forgetting is one row update
// that readers' locks order.
package shred
