package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/netio"
)

// upstreamConn is the gateway's own connection to a PostgreSQL server,
// authenticated with the gateway's credential, after pgconn's startup.
type upstreamConn struct {
	conn   net.Conn
	pid    uint32
	secret []byte
	params map[string]string
	tx     byte
	tls    *tls.Config
	addr   string
	// poolKey and poolGen say where the connection may go back when its
	// session ends cleanly (see upstreamPool).
	poolKey string
	poolGen uint64
}

// dialUpstream connects and authenticates to the upstream with the
// gateway-held credential, then takes over the raw connection.
func dialUpstream(ctx context.Context, u config.Upstream, params map[string]string, timeout time.Duration) (*upstreamConn, error) {
	cfg, err := upstreamConfig(u, params, timeout)
	if err != nil {
		return nil, err
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("upstream connect: %w", err)
	}
	// pgconn may read in the background during a slow write; SyncConn
	// stops that and drains its buffers so no byte of the session is lost.
	if err := pc.SyncConn(ctx); err != nil {
		pc.Close(ctx)
		return nil, fmt.Errorf("upstream sync: %w", err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		pc.Close(ctx)
		return nil, fmt.Errorf("upstream hijack: %w", err)
	}
	return &upstreamConn{conn: hc.Conn, pid: hc.PID, secret: hc.SecretKey, params: hc.ParameterStatuses,
		tx: hc.TxStatus, tls: hc.TLSConfig, addr: net.JoinHostPort(u.Host, strconv.Itoa(u.Port))}, nil
}

// upstreamConfig is the pgconn configuration for the gateway's own
// connection to u.
func upstreamConfig(u config.Upstream, params map[string]string, timeout time.Duration) (*pgconn.Config, error) {
	pw, err := u.Password()
	if err != nil {
		return nil, err
	}
	// Keywords are set on the parsed config, not in a connection string,
	// so no value can inject another keyword.
	cfg, err := pgconn.ParseConfig("sslmode=disable")
	if err != nil {
		return nil, fmt.Errorf("upstream config: %w", err)
	}
	cfg.Host, cfg.Port, cfg.Database, cfg.User = u.Host, uint16(u.Port), u.DBName, u.User
	cfg.Password = string(pw)
	cfg.Fallbacks = nil
	cfg.ConnectTimeout = timeout
	cfg.RuntimeParams = params
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: timeout}
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return netio.Wrap(c), nil
	}
	cfg.TLSConfig, err = upstreamTLS(u)
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

func upstreamTLS(u config.Upstream) (*tls.Config, error) {
	switch u.TLS {
	case "disable":
		return nil, nil
	case "require":
		// Encrypted, server not verified: as libpq's sslmode=require.
		return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, nil
	}
	c := &tls.Config{ServerName: u.Host, MinVersion: tls.VersionTLS12}
	if u.CAFile != "" {
		pem, err := os.ReadFile(u.CAFile)
		if err != nil {
			return nil, fmt.Errorf("upstream %q ca_file: %w", u.Database, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream %q ca_file: no certificates", u.Database)
		}
		c.RootCAs = pool
	}
	return c, nil
}

// close says goodbye to the server and closes the connection.
func (u *upstreamConn) close() {
	_ = u.conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = u.conn.Write([]byte{'X', 0, 0, 0, 4})
	_ = u.conn.Close()
}

// cancel sends a CancelRequest for this connection's backend on a new
// connection, as libpq does.
func (u *upstreamConn) cancel() error {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", u.addr)
	if err != nil {
		return fmt.Errorf("cancel dial: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if u.tls != nil {
		if _, err := c.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}); err != nil {
			return fmt.Errorf("cancel SSLRequest: %w", err)
		}
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return fmt.Errorf("cancel SSLRequest: %w", err)
		}
		if b[0] != 'S' {
			return errors.New("cancel: upstream declined TLS")
		}
		tc := tls.Client(c, u.tls.Clone())
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("cancel TLS: %w", err)
		}
		c = tc
	}
	msg, err := (&pgproto3.CancelRequest{ProcessID: u.pid, SecretKey: u.secret}).Encode(nil)
	if err != nil {
		return err
	}
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("cancel write: %w", err)
	}
	// The server closes the connection when it has acted.
	_, _ = io.Copy(io.Discard, c)
	return nil
}
