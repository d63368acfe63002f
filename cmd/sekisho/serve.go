package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/sekisho/sekisho/internal/admin"
	"github.com/sekisho/sekisho/internal/alert"
	"github.com/sekisho/sekisho/internal/audit"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/proxy"
	"github.com/sekisho/sekisho/internal/store"
)

func cmdServe(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgPath := fs.String("config", "sekisho.yaml", "config file")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return hintError{err, "fix the config file; 'sekisho help' lists the commands, README.md the settings"}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	gw, err := startGateway(context.Background(), cfg, log)
	if err != nil {
		return err
	}
	if gw.caPath != "" {
		fmt.Fprintf(os.Stderr, "sekisho: clients verify the gateway with sslrootcert=%s\n", gw.caPath)
	}
	fmt.Fprintf(os.Stderr, "sekisho: listening on %s\n", gw.ln.Addr())

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	for {
		select {
		case err := <-gw.served:
			gw.close()
			return err
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				next, err := config.Load(*cfgPath)
				if err != nil {
					log.Error("config reload refused; keeping the running config", "err", err)
					continue
				}
				if tlsCfg, _, err := proxy.ServerTLS(next); err != nil {
					log.Error("listener certificate reload refused; keeping the running one", "err", err)
				} else if err := gw.srv.ReloadTLS(tlsCfg); err != nil {
					log.Error("listener certificate reload refused; keeping the running one", "err", err)
				}
				gw.au.SetFlushEvery(next.Audit.FlushEvery.D())
				gw.srv.Reload(next)
				continue
			}
			log.Info("draining sessions", "timeout", cfg.Limits.ShutdownTimeout.D().String())
			return gw.shutdown()
		}
	}
}

// gateway is a running server with everything it owns.
type gateway struct {
	srv *proxy.Server
	ln  net.Listener
	st  store.Store
	au  *audit.File
	// sink is what records events: the audit file, and the alert
	// webhook for alerts when one is configured.
	sink   audit.Sink
	alerts *alert.Webhook
	adm    *admin.Server

	stopSweep, sweepDone chan struct{}
	cfg                  *config.Config
	caPath               string
	served               chan error
}

func startGateway(ctx context.Context, cfg *config.Config, log *slog.Logger) (*gateway, error) {
	// The Go collector runs when the heap has grown by limits.gc_percent
	// since the last collection; the environment's GOGC, when set, wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(cfg.Limits.GCPercent)
	}
	for _, u := range cfg.Upstreams {
		if _, err := u.Password(); err != nil {
			return nil, hintError{err, "the config names where the gateway's upstream password is; create that file (mode 0600) or set that variable"}
		}
	}
	st, err := store.OpenSQLite(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	au, err := audit.OpenFile(cfg.Audit.Path)
	if err != nil {
		st.Close()
		return nil, err
	}
	au.SetFlushEvery(cfg.Audit.FlushEvery.D())
	var sink audit.Sink = au
	var alerts *alert.Webhook
	if cfg.Alerts.Webhook != "" {
		secret, err := cfg.Alerts.Secret()
		if err == nil {
			alerts, err = alert.New(alert.Options{URL: cfg.Alerts.Webhook, Secret: secret, CAFile: cfg.Alerts.CAFile, Log: log})
		}
		if err != nil {
			st.Close()
			au.Close()
			return nil, hintError{err, "fix the alerts section of the config"}
		}
		sink = alert.Sink{Next: au, Webhook: alerts}
	}
	tlsCfg, caPath, err := proxy.ServerTLS(cfg)
	if err != nil {
		st.Close()
		au.Close()
		return nil, err
	}
	if cfg.Listen.AllowPlaintext {
		log.Warn("plaintext client connections are allowed (loopback only)")
	}
	srv, err := proxy.New(ctx, proxy.Options{Config: cfg, Store: st, Audit: sink, Log: log, TLS: tlsCfg})
	if err != nil {
		st.Close()
		au.Close()
		return nil, err
	}
	ln, err := proxy.Listen(cfg)
	if err != nil {
		st.Close()
		au.Close()
		return nil, hintError{err, "choose a free address in listen.address"}
	}
	adm, err := admin.Start(cfg.StateDir, srv, st, sink, log)
	if err != nil {
		ln.Close()
		st.Close()
		au.Close()
		return nil, hintError{err, "stop the other gateway, or give this one its own state_dir"}
	}
	gw := &gateway{srv: srv, ln: ln, st: st, au: au, sink: sink, alerts: alerts, adm: adm, cfg: cfg, caPath: caPath, served: make(chan error, 1),
		stopSweep: make(chan struct{}), sweepDone: make(chan struct{})}
	go func() { gw.served <- srv.Serve(ln) }()
	go gw.sweepAccounts(log)
	if cfg.Login.Address != "" {
		host, _, _ := net.SplitHostPort(cfg.Login.Address)
		if tlsCfg == nil && !isLoopbackHost(host) {
			_ = gw.shutdown()
			return nil, hintError{fmt.Errorf("login.address %s: the login API needs TLS off loopback", cfg.Login.Address), "configure listen.tls or use a loopback login.address"}
		}
		lln, err := net.Listen("tcp", cfg.Login.Address)
		if err != nil {
			_ = gw.shutdown()
			return nil, hintError{err, "choose a free address in login.address"}
		}
		go func() {
			if err := srv.ServeLogin(lln); err != nil {
				log.Error("login API stopped", "err", err)
			}
		}()
		log.Info("login API listening", "address", lln.Addr().String())
	}
	return gw, nil
}

func isLoopbackHost(h string) bool {
	ip := net.ParseIP(h)
	return h == "localhost" || ip != nil && ip.IsLoopback()
}

func (gw *gateway) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), gw.cfg.Limits.ShutdownTimeout.D())
	defer cancel()
	err := gw.srv.Shutdown(ctx)
	gw.close()
	if errors.Is(err, context.DeadlineExceeded) {
		return nil // sessions were ended with 57P01, as designed
	}
	return err
}

// sweepAccounts disables dormant accounts and alerts on coming expiries,
// at start and every hour.
func (gw *gateway) sweepAccounts(log *slog.Logger) {
	defer close(gw.sweepDone)
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		cfg := gw.srv.Config()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		sw, err := identity.SweepAccounts(ctx, gw.st, gw.sink, time.Now(), cfg.DormantAfter.D(), cfg.ExpiryWarning.D(), cfg.BreakGlass)
		cancel()
		if err != nil {
			log.Error("account sweep failed", "err", err)
		} else if len(sw.Disabled)+len(sw.Warned) > 0 {
			log.Info("account sweep", "disabled_dormant", len(sw.Disabled), "expiry_alerts", len(sw.Warned))
		}
		select {
		case <-gw.stopSweep:
			return
		case <-t.C:
		}
	}
}

func (gw *gateway) close() {
	close(gw.stopSweep)
	<-gw.sweepDone
	gw.adm.Close()
	gw.ln.Close()
	gw.st.Close()
	if gw.alerts != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = gw.alerts.Close(ctx) // what could not be sent in time is in the audit log and the error log
		cancel()
	}
	gw.au.Close()
}
