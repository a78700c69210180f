package dashboard

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/strata-go/strata/eventstore"
)

// deadLettersPage is the data of deadletters.html.
type deadLettersPage struct {
	page
	Subscription string
	DeadLetters  []eventstore.DeadLetter
	Retried      string // the notice after a retry (made here: the page reflects no text from its URL)
}

func (s *Server) deadLetters(w http.ResponseWriter, r *http.Request) {
	sub := r.URL.Query().Get("subscription")
	dls, err := s.store.DeadLetters(r.Context(), sub)
	if err != nil {
		s.fail(w, r, statusOf(err), err)
		return
	}
	p := deadLettersPage{page: s.page(r, "Dead letters"), Subscription: sub, DeadLetters: dls}
	if n, err := strconv.ParseInt(r.URL.Query().Get("retried"), 10, 64); err == nil && n >= 0 {
		p.Retried = plural(n, "dead letter", "dead letters") + " marked for retry"
	}
	s.render(w, r, "deadletters.html", p)
}

// deadLetterPage is the data of deadletter.html.
type deadLetterPage struct {
	page
	DeadLetter eventstore.DeadLetter
	Event      *eventView
	BlockedBy  *eventstore.DeadLetter
	Followers  []eventstore.DeadLetter
}

func (s *Server) deadLetter(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, fmt.Errorf("dead letter %q: not a number", r.PathValue("id")))
		return
	}
	dls, err := s.store.DeadLetters(r.Context(), "")
	if err != nil {
		s.fail(w, r, statusOf(err), err)
		return
	}
	p := deadLetterPage{page: s.page(r, "Dead letter "+strconv.FormatInt(id, 10))}
	found := false
	for _, d := range dls {
		if d.ID == id {
			p.DeadLetter, found = d, true
		}
	}
	if !found {
		s.fail(w, r, http.StatusNotFound, fmt.Errorf("no dead letter %d (retried successfully, or reset away)", id))
		return
	}
	for _, d := range dls {
		switch {
		case d.ID == p.DeadLetter.BlockedBy:
			p.BlockedBy = &d
		case d.BlockedBy == id && d.Subscription == p.DeadLetter.Subscription:
			p.Followers = append(p.Followers, d)
		}
	}
	// The event itself: the one entry of the log right after the position
	// just before it (no position lies between the two).
	pos := p.DeadLetter.Position
	page, err := s.store.ReadAll(r.Context(), eventstore.Position{TxID: pos.TxID, Seq: pos.Seq - 1}, 1)
	if err != nil {
		s.fail(w, r, statusOf(err), err)
		return
	}
	if len(page.Events) == 1 && page.Events[0].ID == p.DeadLetter.EventID {
		ev := s.view(page.Events[0])
		p.Event = &ev
	}
	s.render(w, r, "deadletter.html", p)
}

// confirmPage is the data of confirm.html: what an action will do, and
// the form that does it.
type confirmPage struct {
	page
	Subscription string
	Stream       string
	Count        int
}

// confirmRetry asks before retrying: what will be retried, and a button.
func (s *Server) confirmRetry(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.Actions {
		s.fail(w, r, http.StatusForbidden, errActionsDisabled)
		return
	}
	q := r.URL.Query()
	p := confirmPage{page: s.page(r, "Retry dead letters"), Subscription: q.Get("subscription"), Stream: q.Get("stream")}
	dls, err := s.store.DeadLetters(r.Context(), p.Subscription)
	if err != nil {
		s.fail(w, r, statusOf(err), err)
		return
	}
	for _, d := range dls {
		if p.Stream == "" || d.StreamID == p.Stream {
			p.Count++
		}
	}
	s.render(w, r, "confirm.html", p)
}

var errActionsDisabled = errors.New("actions are disabled: the dashboard is read-only (start it with --actions, or Config.Actions, to retry dead letters)")

// retry marks dead letters for retry: a POST from this dashboard's own
// confirmation form (CSRF token and confirm=yes), logged.
func (s *Server) retry(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.Actions {
		s.fail(w, r, http.StatusForbidden, errActionsDisabled)
		return
	}
	if !s.validCSRF(r) {
		s.fail(w, r, http.StatusForbidden, errors.New("the form's CSRF token is missing or stale: reload the page and confirm again"))
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		s.fail(w, r, http.StatusBadRequest, errors.New("not confirmed"))
		return
	}
	sub, stream := r.PostFormValue("subscription"), r.PostFormValue("stream")
	if sub == "" {
		s.fail(w, r, http.StatusBadRequest, errors.New("which subscription's dead letters? (subscription is empty)"))
		return
	}
	n, err := s.store.RetryDeadLetters(r.Context(), sub, stream)
	if err != nil {
		s.fail(w, r, statusOf(err), err)
		return
	}
	s.log.Info("dashboard: dead letters marked for retry", "subscription", sub, "stream", stream, "marked", n,
		"user", user(r), "remote", r.RemoteAddr)
	q := url.Values{"subscription": {sub}, "retried": {strconv.FormatInt(n, 10)}}
	http.Redirect(w, r, s.cfg.Prefix+"dead-letters?"+q.Encode(), http.StatusSeeOther)
}

// statusOf maps the store's errors to HTTP statuses: bad input is the
// caller's (400), a missing stream 404, anything else the server's.
func statusOf(err error) int {
	switch {
	case errors.Is(err, eventstore.ErrInvalidArgument):
		return http.StatusBadRequest
	case errors.Is(err, eventstore.ErrStreamNotFound):
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}
