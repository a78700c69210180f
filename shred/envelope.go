package shred

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Prefix begins every sealed value: a personal field is stored as the
// JSON string Prefix + base64url(header, nonce, AES-256-GCM ciphertext).
// The header is in clear and authenticated (the GCM additional data,
// with the field's JSON pointer): the plaintext's kind (a JSON string or
// not), the key version, the ID of the event the value was sealed for and
// the subject. So a value opens only under its subject's key, in its
// field, in its event (or a copy of it, see Open).
const Prefix = "strata:pii:1:"

const (
	kindString = 's' // the plaintext is a JSON string
	kindOther  = 'j' // any other JSON value
	keySize    = 32  // AES-256
	headerMin  = 1 + 4 + 16 + 2
)

// header is a sealed value's clear part.
type header struct {
	kind    byte
	version uint32
	event   uuid.UUID
	subject string
}

func (h header) bytes() []byte {
	b := make([]byte, 0, headerMin+len(h.subject))
	b = append(b, h.kind)
	b = binary.BigEndian.AppendUint32(b, h.version)
	b = append(b, h.event[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.subject)))
	return append(b, h.subject...)
}

// sealValue encrypts the JSON value plain for the field ptr.
func sealValue(aead cipher.AEAD, h header, ptr string, plain []byte) ([]byte, error) {
	hb := h.bytes()
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	raw := append(append(hb, nonce...), aead.Seal(nil, nonce, plain, aad(hb, ptr))...)
	out := make([]byte, 0, 2+len(Prefix)+base64.RawURLEncoding.EncodedLen(len(raw)))
	out = append(append(out, '"'), Prefix...)
	out = base64.RawURLEncoding.AppendEncode(out, raw)
	return append(out, '"'), nil
}

// sealed is a parsed sealed value, not yet opened.
type sealed struct {
	header
	hb, nonce, ct []byte
}

// parseSealed parses a sealed value's text (without quotes or prefix).
func parseSealed(text string) (sealed, error) {
	raw, err := base64.RawURLEncoding.DecodeString(text)
	if err != nil || len(raw) < headerMin {
		return sealed{}, fmt.Errorf("%w: not a sealed value", ErrTampered)
	}
	var v sealed
	v.kind = raw[0]
	v.version = binary.BigEndian.Uint32(raw[1:5])
	copy(v.event[:], raw[5:21])
	n := int(binary.BigEndian.Uint16(raw[21:23]))
	if v.kind != kindString && v.kind != kindOther || len(raw) < headerMin+n+12+16 {
		return sealed{}, fmt.Errorf("%w: malformed sealed value", ErrTampered)
	}
	v.subject = string(raw[23 : 23+n])
	if n == 0 || n > MaxSubjectLength || !utf8.ValidString(v.subject) || strings.IndexByte(v.subject, 0) >= 0 {
		return sealed{}, fmt.Errorf("%w: malformed subject", ErrTampered)
	}
	v.hb = raw[:23+n]
	v.nonce = raw[23+n : 23+n+12]
	v.ct = raw[23+n+12:]
	return v, nil
}

// open decrypts v, sealed for the field ptr, with its subject's key.
func (v sealed) open(aead cipher.AEAD, ptr string) ([]byte, error) {
	plain, err := aead.Open(nil, v.nonce, v.ct, aad(v.hb, ptr))
	if err != nil {
		return nil, fmt.Errorf("%w: %s of subject %q does not authenticate", ErrTampered, ptr, v.subject)
	}
	return plain, nil
}

func aad(hb []byte, ptr string) []byte {
	return append(append(append([]byte(Prefix), hb...), 0), ptr...)
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != keySize {
		return nil, fmt.Errorf("%w: key of %d bytes, want %d", ErrUnknownKey, len(key), keySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
