package socketkeeper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A Store keeps copies of a keeper's sockets in another process, so that
// they outlive the keeper's whole container: killed with SIGKILL, or
// restarted by the kubelet after a failed liveness probe. While the store
// holds them the addresses stay open and connections wait in their queues;
// the keeper the kubelet starts next claims them and serves what waited.
// It is systemd's file descriptor store, run as a second container of the
// agent's pod, reached over a unix socket in a directory both mount.
//
// The store gives the sockets up when nobody claims them within Hold (a
// container in CrashLoopBackOff should be refused, not waited on), and at
// once when it is stopped: the pod is going, and in a rollout the new
// agent's sockets must get the connections.
type Store struct {
	// Path of the store's unix socket.
	Path string
	// Hold is how long sockets are kept once their keeper is gone; default
	// 15 s: the kubelet restarts a container that ended for the first time
	// at once, and the second time within 10 minutes after 10 s of
	// back-off; later ones, after 20 s and more, are refused meanwhile.
	Hold time.Duration
	Log  *slog.Logger

	mu      sync.Mutex
	held    []Socket
	lease   *net.UnixConn // the keeper's connection, open while it lives
	release *time.Timer
}

// maxSockets bounds the sockets in one message.
const maxSockets = 16

// storeMessage is what the store and a keeper send each other: the names
// of the sockets whose descriptors come with it (SCM_RIGHTS), in order.
type storeMessage struct {
	Sockets []string `json:"sockets"`
}

// Serve answers keepers until ctx ends, then gives the sockets up.
func (s *Store) Serve(ctx context.Context) error {
	if s.Hold == 0 {
		s.Hold = 15 * time.Second
	}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	// A store killed before leaves its socket file behind.
	if err := os.Remove(s.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing the socket store's old socket: %w", err)
	}
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: s.Path, Net: "unixpacket"})
	if err != nil {
		return fmt.Errorf("socket store: %w", err)
	}
	go func() { <-ctx.Done(); l.Close() }()
	defer s.stop()
	for {
		conn, err := l.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("socket store: %w", err)
		}
		go s.serve(conn)
	}
}

// serve gives a keeper the sockets held, then takes what it deposits until
// it is gone.
func (s *Store) serve(conn *net.UnixConn) {
	s.mu.Lock()
	if s.release != nil {
		s.release.Stop()
		s.release = nil
	}
	s.lease = conn // the newest keeper is the one alive
	err := send(conn, s.held)
	s.mu.Unlock()
	if err != nil {
		s.Log.Warn("giving the sockets held to the agent's keeper failed", "error", err.Error())
	}
	for {
		sockets, err := receive(conn)
		if err != nil {
			break
		}
		s.mu.Lock()
		closeAll(s.held)
		s.held = sockets
		s.mu.Unlock()
		s.Log.Info("holding the agent's sockets, for them to outlive its container", "sockets", len(sockets))
	}
	conn.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lease != conn {
		return
	}
	s.lease = nil
	if len(s.held) > 0 {
		s.Log.Warn("the agent's keeper is gone; its addresses stay open for the next one", "hold", s.Hold.String())
		s.release = time.AfterFunc(s.Hold, s.unclaimed)
	}
}

// unclaimed gives the sockets up when no keeper claimed them within Hold.
func (s *Store) unclaimed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lease == nil { // else a keeper claimed them as the timer fired
		s.dropLocked("no keeper claimed them within " + s.Hold.String())
	}
}

// stop gives the sockets up as the store stops.
func (s *Store) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lease != nil {
		s.lease.Close()
	}
	if s.release != nil {
		s.release.Stop()
	}
	s.dropLocked("the store stops")
}

func (s *Store) dropLocked(why string) {
	if len(s.held) > 0 {
		s.Log.Info("gave up the agent's sockets: "+why, "sockets", len(s.held))
	}
	closeAll(s.held)
	s.held = nil
}

// Lease is a keeper's connection to a Store, held open while it lives.
type Lease struct {
	path string
	conn *net.UnixConn
}

// Claim connects to the store at path and returns the sockets it holds
// (none when the pod's first keeper starts). The store takes the keeper for
// alive until the Lease is closed or the keeper's process ends.
func Claim(path string) (*Lease, []Socket, error) {
	conn, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, nil, fmt.Errorf("reaching the socket store: %w", err)
	}
	held, err := receive(conn)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("reading the socket store's sockets: %w", err)
	}
	return &Lease{path: path, conn: conn}, held, nil
}

// Keep gives the store copies of the keeper's sockets, in place of what it
// held, and gives them again to a store that restarts. The lease stays open
// until this process ends, even past ctx (which only stops the redialling):
// the store's Hold counts from the keeper's exit, not from the SIGTERM that
// began its drain.
func (l *Lease) Keep(ctx context.Context, sockets []Socket, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	conn := l.conn
	for {
		if err := send(conn, sockets); err == nil {
			// The store sends nothing more: a read ends when it goes.
			if extra, err := receive(conn); err == nil {
				closeAll(extra)
			}
		}
		conn.Close()
		if ctx.Err() != nil {
			return
		}
		log.Warn("the socket store went away; giving it the sockets again once it is back")
		if conn = redial(ctx, l.path); conn == nil {
			return
		}
	}
}

// Close ends the lease without giving the store anything.
func (l *Lease) Close() error { return l.conn.Close() }

// redial reaches a restarted store, every second until ctx ends (nil).
func redial(ctx context.Context, path string) *net.UnixConn {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
		conn, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
		if err != nil {
			continue
		}
		if held, err := receive(conn); err == nil {
			closeAll(held) // a restarted store holds nothing of use
			return conn
		}
		conn.Close()
	}
}

func send(conn *net.UnixConn, sockets []Socket) error {
	if len(sockets) > maxSockets {
		return fmt.Errorf("%d sockets: at most %d", len(sockets), maxSockets)
	}
	msg := storeMessage{Sockets: []string{}}
	var fds []int
	for _, s := range sockets {
		msg.Sockets = append(msg.Sockets, s.Name)
		fds = append(fds, int(s.File.Fd()))
	}
	body, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	_, _, err = conn.WriteMsgUnix(body, oob, nil)
	return err
}

func receive(conn *net.UnixConn) ([]Socket, error) {
	body := make([]byte, 8<<10)
	oob := make([]byte, unix.CmsgSpace(maxSockets*4))
	n, oobn, flags, _, err := conn.ReadMsgUnix(body, oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, fmt.Errorf("socket store message: %w", err)
		}
		for _, m := range msgs {
			got, err := unix.ParseUnixRights(&m)
			if err == nil {
				fds = append(fds, got...)
			}
		}
	}
	for _, fd := range fds {
		unix.CloseOnExec(fd)
	}
	var msg storeMessage
	var bad error
	switch {
	case n == 0:
		bad = errors.New("socket store: connection closed")
	case flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0:
		bad = errors.New("socket store message truncated")
	case json.Unmarshal(body[:n], &msg) != nil || len(msg.Sockets) != len(fds):
		bad = fmt.Errorf("socket store message: %d names for %d sockets", len(msg.Sockets), len(fds))
	}
	if bad != nil {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, bad
	}
	sockets := make([]Socket, len(fds))
	for i, fd := range fds {
		sockets[i] = Socket{Name: msg.Sockets[i], File: os.NewFile(uintptr(fd), msg.Sockets[i])}
	}
	return sockets, nil
}

func closeAll(sockets []Socket) {
	for _, s := range sockets {
		s.File.Close()
	}
}
