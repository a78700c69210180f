package eventstore

import (
	"log/slog"

	"github.com/strata-go/strata/internal/storeview"
)

// The packages built on the store read its configuration and telemetry
// (the defaults of their own workers), its wake-up channel, and derive a
// store with another validator through internal/storeview: none of it is
// for users, who set these in Config.
func init() {
	storeview.Register(storeview.Funcs[*Store]{
		Info: func(s *Store) storeview.Info {
			return storeview.Info{
				Schema:         s.cfg.Schema,
				Channel:        s.channel(),
				Logger:         s.cfg.Logger,
				MeterProvider:  s.tel.mp,
				TracerProvider: s.tel.tp,
			}
		},
		WithValidator: func(s *Store, v any) *Store {
			if v == nil {
				return s.withValidator(nil)
			}
			return s.withValidator(v.(Validator))
		},
		Recovered: func(log *slog.Logger, what string, v any) error { return recovered(log, what, v) },
	})
}
