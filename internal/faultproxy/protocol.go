package faultproxy

import "encoding/binary"

// Reading the Postgres protocol's message boundaries, as the proxy forwards bytes.

// msgEvent is what frontendReader.feed found.
type msgEvent struct {
	end     bool  // a message ended at the returned offset
	typ     byte  // its type (0: an untyped startup-phase packet)
	size    int   // its length on the wire
	request int32 // the code of an untyped packet
}

// frontendReader follows the frontend protocol across chunk boundaries.
// Untyped packets (startup, SSLRequest, GSSENCRequest, CancelRequest) are
// a length and a code of 4 bytes each, then the rest; typed messages a
// type byte and a length.
type frontendReader struct {
	typed  bool // past the startup packet
	opaque bool // TLS or an unknown packet: stop parsing
	hdr    [8]byte
	nhdr   int
	need   int // bytes of the current message's body still to come
	cur    msgEvent
}

// feed consumes bytes of b up to the end of one message (or all of b) and
// returns how many it consumed and whether a message ended there.
func (r *frontendReader) feed(b []byte) (int, msgEvent) {
	if r.opaque {
		return len(b), msgEvent{}
	}
	hdrLen := 8
	if r.typed {
		hdrLen = 5
	}
	i := 0
	if r.nhdr < hdrLen {
		k := copy(r.hdr[r.nhdr:hdrLen], b)
		r.nhdr += k
		i += k
		if r.nhdr < hdrLen {
			return i, msgEvent{}
		}
		if r.typed {
			length := int(binary.BigEndian.Uint32(r.hdr[1:5]))
			if length < 4 {
				r.opaque = true
				return len(b), msgEvent{}
			}
			r.cur = msgEvent{typ: r.hdr[0], size: length + 1}
			r.need = length - 4
		} else {
			length := int(binary.BigEndian.Uint32(r.hdr[0:4]))
			if length < 8 {
				r.opaque = true
				return len(b), msgEvent{}
			}
			r.cur = msgEvent{size: length, request: int32(binary.BigEndian.Uint32(r.hdr[4:8]))}
			r.need = length - 8
		}
	}
	k := min(r.need, len(b)-i)
	r.need -= k
	i += k
	if r.need > 0 {
		return i, msgEvent{}
	}
	ev := r.cur
	ev.end = true
	r.nhdr = 0
	if !r.typed {
		switch ev.request {
		case sslRequest, gssencRequest:
			// An untyped packet comes next again (the startup message),
			// unless the server accepts: then parsing stops (see
			// backendReader.tls).
		case cancelRequest:
			r.opaque = true
		default:
			r.typed = true
		}
	}
	return i, ev
}

// backendReader follows the backend protocol across chunk boundaries, to
// see ReadyForQuery.
type backendReader struct {
	oneByte int  // untyped one-byte answers to expect first
	tls     bool // the server accepted TLS or GSS encryption: opaque
	hdr     [5]byte
	nhdr    int
	need    int
}

// feed consumes b and returns how many ReadyForQuery messages ended in it.
func (r *backendReader) feed(b []byte) int {
	rfq := 0
	for i := 0; i < len(b) && !r.tls; {
		if r.nhdr == 0 && r.need == 0 && r.oneByte > 0 {
			r.oneByte--
			if b[i] == 'S' || b[i] == 'G' {
				r.tls = true
			}
			i++
			continue
		}
		if r.nhdr < 5 {
			k := copy(r.hdr[r.nhdr:], b[i:])
			r.nhdr += k
			i += k
			if r.nhdr < 5 {
				return rfq
			}
			r.need = int(binary.BigEndian.Uint32(r.hdr[1:5])) - 4
		}
		k := min(r.need, len(b)-i)
		r.need -= k
		i += k
		if r.need == 0 {
			if r.hdr[0] == 'Z' {
				rfq++
			}
			r.nhdr = 0
		}
	}
	return rfq
}
