// Package admin is the running gateway's administration API: HTTP over a
// Unix socket in the state directory, open only to the gateway's own user
// (and root). The CLI is its client, so a suspension takes effect in the
// running process at once. Who made a change is taken from the socket's
// peer credentials, never from what the client claims.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sekisho/sekisho/internal/audit"
	"github.com/sekisho/sekisho/internal/proxy"
	"github.com/sekisho/sekisho/internal/store"
)

// SocketName is the admin socket's file name in the state directory.
const SocketName = "admin.sock"

// Server serves the admin API.
type Server struct {
	gw    *proxy.Server
	store store.Store
	audit audit.Sink
	log   *slog.Logger
	http  *http.Server
	ln    net.Listener
}

type peerKey struct{}

// Start listens on the socket in stateDir and serves until Close.
func Start(stateDir string, gw *proxy.Server, st store.Store, au audit.Sink, log *slog.Logger) (*Server, error) {
	path := filepath.Join(stateDir, SocketName)
	if len(path) > 104 { // sun_path is 108 bytes on Linux, 104 elsewhere
		return nil, fmt.Errorf("admin socket path %s is too long for a Unix socket; use a shorter state_dir", path)
	}
	// A socket left by a gateway that died is removed; a live one is not.
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin socket %s: another gateway is running", path)
	}
	_ = os.Remove(path)
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	s := &Server{gw: gw, store: st, audit: au, log: log, ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/users/{name}/suspend", s.suspend)
	mux.HandleFunc("POST /v1/users/{name}/resume", s.resume)
	mux.HandleFunc("POST /v1/lock", s.lock)
	mux.HandleFunc("POST /v1/unlock", s.unlock)
	mux.HandleFunc("POST /v1/devices/{id}/end", s.endDevice)
	s.http = &http.Server{
		Handler:           s.onlyOwner(mux),
		ReadHeaderTimeout: 5 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerKey{}, c)
		},
	}
	go s.http.Serve(ln)
	return s, nil
}

// Close stops the API and removes the socket.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.http.Shutdown(ctx)
}

// onlyOwner admits peers running as the gateway's user or root; the file
// mode already says so, this holds even if the mode is changed.
func (s *Server) onlyOwner(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uid, ok := peerUID(r)
		if !ok || (uid != 0 && uid != os.Getuid()) {
			reply(w, http.StatusForbidden, Response{Error: "only the gateway's service user may use the admin API"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func peerUID(r *http.Request) (int, bool) {
	c, ok := r.Context().Value(peerKey{}).(*net.UnixConn)
	if !ok {
		return 0, false
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return 0, false
	}
	return int(cred.Uid), true
}

// actor names the peer: its login name, with SUDO_USER's name when the
// client said it ran under sudo as root (root can claim it anyway).
func actor(r *http.Request, claimed string) string {
	uid, _ := peerUID(r)
	name := "uid " + strconv.Itoa(uid)
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		name = u.Username
	}
	if uid == 0 && claimed != "" && claimed != name {
		name += " (sudo by " + claimed + ")"
	}
	return name
}

// Request is the body of a change.
type Request struct {
	Reason string `json:"reason"`
	// SudoUser is who ran the CLI under sudo, if anyone.
	SudoUser string `json:"sudo_user,omitempty"`
}

// Response reports what happened.
type Response struct {
	User          string `json:"user,omitempty"`
	SessionsEnded int    `json:"sessions_ended"`
	Error         string `json:"error,omitempty"`
	Hint          string `json:"hint,omitempty"`
}

func reply(w http.ResponseWriter, code int, v Response) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) suspend(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req Request
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil || strings.TrimSpace(req.Reason) == "" {
		reply(w, http.StatusBadRequest, Response{Error: "a reason is required", Hint: "say why, for the record: --reason \"contract ended\""})
		return
	}
	who := actor(r, req.SudoUser)
	now := time.Now().UTC()
	// New connections are refused first, then the live ones end: nothing
	// can slip in between.
	if !s.updateUser(w, r, name, "nothing was suspended", func(u *store.User) {
		u.Disabled = true
		u.DisabledReason = "suspended: " + req.Reason + " (" + who + ", " + now.Format(time.DateOnly) + ")"
		u.Updated, u.UpdatedBy = now, who
	}) {
		return
	}
	revoked, err := s.gw.RevokeCredentials(r.Context(), name, who)
	if err != nil {
		s.log.Error("credentials not revoked", "user", name, "err", err)
	}
	n := s.gw.EndUserSessions(name, "account suspended")
	_ = s.audit.Record(audit.Event{Type: audit.AccountChange, User: name, Actor: who,
		Reason: fmt.Sprintf("suspended: %s; %d live sessions ended; %d access credentials revoked", req.Reason, n, revoked)})
	reply(w, http.StatusOK, Response{User: name, SessionsEnded: n})
}

// endDevice ends the live sessions of a device that was just revoked in
// the store (sekisho device revoke).
func (s *Server) endDevice(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	n := s.gw.EndDeviceSessions(id, "device revoked")
	_ = s.audit.Record(audit.Event{Type: audit.DeviceEvent, Actor: actor(r, ""), Reason: fmt.Sprintf("device %s: %d live sessions ended", id, n)})
	reply(w, http.StatusOK, Response{SessionsEnded: n})
}

func (s *Server) resume(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req Request
	_ = json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req)
	who := actor(r, req.SudoUser)
	now := time.Now().UTC()
	if !s.updateUser(w, r, name, "the account stays suspended", func(u *store.User) {
		u.Disabled, u.DisabledReason = false, ""
		u.Updated, u.UpdatedBy = now, who
	}) {
		return
	}
	_ = s.audit.Record(audit.Event{Type: audit.AccountChange, User: name, Actor: who, Reason: "resumed"})
	reply(w, http.StatusOK, Response{User: name})
}

// updateUser applies change to an account, replying with the error (and
// returning false) when it cannot.
func (s *Server) updateUser(w http.ResponseWriter, r *http.Request, name, unchanged string, change func(*store.User)) bool {
	_, err := s.store.UpdateUser(r.Context(), name, func(u *store.User) error { change(u); return nil })
	switch {
	case errors.Is(err, store.ErrNotFound):
		reply(w, http.StatusNotFound, Response{Error: fmt.Sprintf("user %q not found", name), Hint: "'sekisho user list' shows the accounts"})
		return false
	case err != nil:
		s.log.Error("account change failed", "user", name, "path", r.URL.Path, "err", err)
		reply(w, http.StatusInternalServerError, Response{Error: "the state store refused the change; " + unchanged})
		return false
	}
	return true
}

func (s *Server) lock(w http.ResponseWriter, r *http.Request) {
	var req Request
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil || strings.TrimSpace(req.Reason) == "" {
		reply(w, http.StatusBadRequest, Response{Error: "a reason is required", Hint: "say why, for the record: --reason \"ransomware suspected\""})
		return
	}
	who := actor(r, req.SudoUser)
	// Locked in the store first, so no new session starts; then the live
	// ones end.
	if err := s.store.SetGatewayLock(r.Context(), store.GatewayLock{Locked: true, Reason: req.Reason, Actor: who, At: time.Now().UTC()}); err != nil {
		s.log.Error("lock failed", "err", err)
		reply(w, http.StatusInternalServerError, Response{Error: "the state store refused the lock; nothing changed"})
		return
	}
	breakGlass := s.gw.Config().BreakGlass
	n := s.gw.EndSessionsExcept(func(u string) bool { return slices.Contains(breakGlass, u) }, "gateway locked")
	_ = s.audit.Record(audit.Event{Type: audit.GatewayLock, Actor: who, Outcome: "locked",
		Reason: fmt.Sprintf("%s; %d live sessions ended", req.Reason, n)})
	reply(w, http.StatusOK, Response{SessionsEnded: n})
}

func (s *Server) unlock(w http.ResponseWriter, r *http.Request) {
	var req Request
	_ = json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req)
	who := actor(r, req.SudoUser)
	if err := s.store.SetGatewayLock(r.Context(), store.GatewayLock{Locked: false, Reason: req.Reason, Actor: who, At: time.Now().UTC()}); err != nil {
		s.log.Error("unlock failed", "err", err)
		reply(w, http.StatusInternalServerError, Response{Error: "the state store refused the change; the gateway stays locked"})
		return
	}
	_ = s.audit.Record(audit.Event{Type: audit.GatewayLock, Actor: who, Outcome: "unlocked"})
	reply(w, http.StatusOK, Response{})
}

// Client calls the admin API of the gateway whose state directory is dir.
type Client struct {
	http *http.Client
}

// ErrNotRunning means no gateway answers on the socket.
var ErrNotRunning = errors.New("no running gateway answers on the admin socket")

// NewClient makes a client for the socket in stateDir.
func NewClient(stateDir string) *Client {
	path := filepath.Join(stateDir, SocketName)
	return &Client{http: &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}},
	}}
}

// Do posts a request to path ("/v1/users/NAME/suspend").
func (c *Client) Do(ctx context.Context, path string, req Request) (Response, error) {
	b, _ := json.Marshal(req)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://sekisho"+path, strings.NewReader(string(b)))
	if err != nil {
		return Response{}, err
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return Response{}, ErrNotRunning
		}
		return Response{}, err
	}
	defer resp.Body.Close()
	var out Response
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return Response{}, fmt.Errorf("admin API answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return out, fmt.Errorf("%s", out.Error)
	}
	return out, nil
}
