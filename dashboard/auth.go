package dashboard

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// authorized checks the request's credentials against Config's: basic
// authentication when Username is set, a bearer token when BearerToken
// is; either passes when both are. With neither configured every request
// passes (the listener is expected on loopback: see the command's
// --listen). Comparisons take the same time whatever the input.
func (s *Server) authorized(r *http.Request) bool {
	c := &s.cfg
	if c.Username == "" && c.BearerToken == "" {
		return true
	}
	if c.BearerToken != "" {
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && same(tok, c.BearerToken) {
			return true
		}
	}
	if c.Username != "" {
		if u, p, ok := r.BasicAuth(); ok {
			// Both compared, always: no early exit tells which was wrong.
			uok, pok := same(u, c.Username), same(p, c.Password)
			return uok && pok
		}
	}
	return false
}

// same compares a and b in constant time (of their hashes, so that the
// length of the secret does not show either).
func same(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// user names who made a request, for the log of actions.
func user(r *http.Request) string {
	if u, _, ok := r.BasicAuth(); ok {
		return u
	}
	if strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		return "(bearer token)"
	}
	return "(anonymous)"
}

// validCSRF reports whether the form carries this Server's CSRF token.
func (s *Server) validCSRF(r *http.Request) bool {
	return same(r.PostFormValue("csrf"), s.csrf)
}
