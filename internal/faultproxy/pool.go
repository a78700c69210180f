package faultproxy

import (
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// PoolConfig parses url (a PostgreSQL connection string) and returns a
// pool configuration for its server through a new proxy (TLS off, a 5s
// connect timeout), with the proxy. The caller closes the proxy after
// the pools made from the configuration.
func PoolConfig(url string) (*pgxpool.Config, *Proxy, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, nil, err
	}
	p, err := New(fmt.Sprintf("%s:%d", cfg.ConnConfig.Host, cfg.ConnConfig.Port))
	if err != nil {
		return nil, nil, err
	}
	cc := cfg.ConnConfig
	cc.Host, cc.Port, cc.TLSConfig, cc.Fallbacks = p.Host(), p.Port(), nil, nil
	cc.ConnectTimeout = 5 * time.Second
	return cfg, p, nil
}
