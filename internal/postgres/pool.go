package postgres

import (
	"context"
	"crypto/sha256"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Pools keeps one small connection pool per DatabaseServer, so that reconciling a thousand tenants does not open
// (and authenticate) a thousand administrative connections. A pool is replaced when the server's connection
// settings or credentials change.
type Pools struct {
	// MaxConns per server.
	MaxConns int32

	mu    sync.Mutex
	pools map[string]*pooled
}

type pooled struct {
	key  [32]byte
	pool *pgxpool.Pool
}

// Server returns an administrative session on server name backed by its pool; Close on it is a no-op.
func (p *Pools) Server(ctx context.Context, name string, cfg ConnConfig) (*Server, error) {
	pool, err := p.pool(ctx, name, cfg)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		return nil, redact(err, cfg.Password)
	}
	return &Server{cfg: cfg, conn: pool, close: func(context.Context) error { return nil }}, nil
}

func (p *Pools) pool(ctx context.Context, name string, cfg ConnConfig) (*pgxpool.Pool, error) {
	key := sha256.Sum256(append([]byte(cfg.URL("")), cfg.CAPEM...))
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pools == nil {
		p.pools = map[string]*pooled{}
	}
	if e, ok := p.pools[name]; ok && e.key == key {
		return e.pool, nil
	} else if ok {
		// Close waits for borrowed connections: never under the lock.
		go e.pool.Close()
		delete(p.pools, name)
	}
	pc, err := pgxpool.ParseConfig(cfg.URL(""))
	if err != nil {
		return nil, redact(err, cfg.Password)
	}
	if err := cfg.trustCA(pc.ConnConfig); err != nil {
		return nil, err
	}
	if p.MaxConns > 0 {
		pc.MaxConns = p.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, redact(err, cfg.Password)
	}
	p.pools[name] = &pooled{key: key, pool: pool}
	return pool, nil
}

// Forget closes the pool of a server that no longer exists.
func (p *Pools) Forget(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.pools[name]; ok {
		go e.pool.Close()
		delete(p.pools, name)
	}
}

// Close closes every pool.
func (p *Pools) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, e := range p.pools {
		e.pool.Close()
		delete(p.pools, name)
	}
}
