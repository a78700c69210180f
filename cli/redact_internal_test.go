package cli

import "testing"

func TestRedactConn(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"postgres://u:0@127.0.0.1:5432/db0", "postgres://u:xxxxx@127.0.0.1:5432/db0"},
		{"postgresql://postgres:postgres@postgres/postgres", "postgresql://postgres:xxxxx@postgres/postgres"},
		{"postgres://u:%40@h/db", "postgres://u:xxxxx@h/db"},
		{"postgres://u@h:5432/db?application_name=a@b", "postgres://u@h:5432/db?application_name=a@b"},
		{"postgres://h:5432/db?x=a@b", "postgres://h:5432/db?x=a@b"},
		{"postgres://u:p@h/db?sslmode=require&password=0&Pass%77ord=1", "postgres://u:xxxxx@h/db?sslmode=require&password=xxxxx&Pass%77ord=1"},
		{"postgres://h/db?pass%77ord=0", "postgres://h/db?pass%77ord=xxxxx"},
		// Malformed: unescaped '@', '/' or '?' in the password; masked up to
		// the last '@' of the host part.
		{"postgres://u:p@ss@h/db", "postgres://u:xxxxx@h/db"},
		{"postgres://u:pa/ss@h/db", "postgres://u:xxxxx@h/db"},
		{"postgres://u:p/a?s@h", "postgres://u:xxxxx@h"},
		{"postgres://u@h/db", "postgres://u@h/db"},
		{"host=h password=0 dbname=d0", "host=h password=xxxxx dbname=d0"},
		{"host=h password = 'a\\' b' user=u", "host=h password = xxxxx user=u"},
		{"host=h sslpassword=0 password='unterminated x", "host=h sslpassword=xxxxx password=xxxxx"},
		{"host=h user=password", "host=h user=password"},
		{"host=h mypassword=0", "host=h mypassword=0"},
		{"order-100", "order-100"},
	} {
		if got := redactConn(c.in); got != c.want {
			t.Errorf("redactConn(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestDisplay(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"order-42", "order-42"},
		{"Bestellung für Zoë, 注文 ✓", "Bestellung für Zoë, 注文 ✓"},
		{"a\x1b[31mb", `"a\x1b[31mb"`},
		{"\u009b2J", `"\u009b2J"`},
		{"x\u202ey", `"x\u202ey"`},
		{"bad\xffutf8", `"bad\xffutf8"`},
		{"tab\there", `"tab\there"`},
		{"\ufffd", "\ufffd"},
	} {
		if got := display(c.in); got != c.want {
			t.Errorf("display(%q) = %s, want %s", c.in, got, c.want)
		}
	}
	if got := string(escapeJSON([]byte("{\n  \"a\": \"\u009b\u202e\U000e0041 ok\"\n}\n"))); got != "{\n  \"a\": \"\\u009b\\u202e\\udb40\\udc41 ok\"\n}\n" {
		t.Errorf("escapeJSON: %q", got)
	}
}
