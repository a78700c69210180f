package schema

// Checks of the common string formats for the fast path, written so that
// they do not allocate (the validator's own checks box the string and
// parse with allocating helpers). Each accepts a subset of what the
// validator accepts: a string they refuse goes to the validator, which
// decides. FuzzFastPath holds them to that.
var fastFormats = map[string]func(string) bool{
	"date-time": isDateTimeFast,
	"date":      isDateFast,
	"email":     isEmailFast,
	"uuid":      isUUIDFast,
}

// digits returns the decimal value of s, all ASCII digits, or -1.
func digits(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// isDateFast accepts an RFC 3339 full-date, YYYY-MM-DD, that exists.
func isDateFast(s string) bool {
	if len(s) != 10 || s[4] != '-' || s[7] != '-' {
		return false
	}
	y, m, d := digits(s[0:4]), digits(s[5:7]), digits(s[8:10])
	if y < 0 || m < 1 || m > 12 || d < 1 {
		return false
	}
	days := [13]int{0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[m]
	if m == 2 && y%4 == 0 && (y%100 != 0 || y%400 == 0) {
		days = 29
	}
	return d <= days
}

// isDateTimeFast accepts an RFC 3339 date-time without a leap second:
// YYYY-MM-DDThh:mm:ss, optional fraction, then Z or ±hh:mm.
func isDateTimeFast(s string) bool {
	if len(s) < 20 || s[10] != 'T' && s[10] != 't' || !isDateFast(s[:10]) {
		return false
	}
	t := s[11:]
	if t[2] != ':' || t[5] != ':' {
		return false
	}
	h, m, sec := digits(t[0:2]), digits(t[3:5]), digits(t[6:8])
	if h < 0 || h > 23 || m < 0 || m > 59 || sec < 0 || sec > 59 {
		return false
	}
	t = t[8:]
	if t[0] == '.' {
		i := 1
		for i < len(t) && t[i] >= '0' && t[i] <= '9' {
			i++
		}
		if i == 1 {
			return false
		}
		t = t[i:]
	}
	switch {
	case t == "Z" || t == "z":
		return true
	case len(t) == 6 && (t[0] == '+' || t[0] == '-') && t[3] == ':':
		zh, zm := digits(t[1:3]), digits(t[4:6])
		return zh >= 0 && zh <= 23 && zm >= 0 && zm <= 59
	}
	return false
}

// isEmailFast accepts the plain addresses most payloads hold: a dot-atom
// local part of at most 64 characters, '@', and a host name of letters,
// digits and inner hyphens.
func isEmailFast(s string) bool {
	if len(s) > 254 {
		return false
	}
	at := -1
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '@' {
			at = i
			break
		}
	}
	if at < 1 || at > 64 {
		return false
	}
	local, domain := s[:at], s[at+1:]
	prev := byte('.')
	for i := 0; i < len(local); i++ {
		c := local[i]
		switch {
		case c == '.':
			if prev == '.' {
				return false // leading or double dot
			}
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c < 0x80 && isAtextSymbol(c):
		default:
			return false
		}
		prev = c
	}
	if prev == '.' {
		return false
	}
	return isHostnameFast(domain)
}

func isAtextSymbol(c byte) bool {
	for i := 0; i < len("!#$%&'*+-/=?^_`{|}~"); i++ {
		if c == "!#$%&'*+-/=?^_`{|}~"[i] {
			return true
		}
	}
	return false
}

// isHostnameFast accepts dot-separated labels of 1 to 63 letters, digits
// and inner hyphens, at most 253 characters in all, without a final dot.
func isHostnameFast(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			c := s[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
			continue
		}
		label := s[start:i]
		if len(label) < 1 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		start = i + 1
	}
	return true
}

// isUUIDFast accepts 8-4-4-4-12 hex digits.
func isUUIDFast(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}
