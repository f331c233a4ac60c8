package sink

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keyturn/keyturn/internal/audit"
)

// Syslog sends each event as an RFC 5424 message (facility "log audit", the event's JSON as
// the message) over UDP, TCP or TLS; TCP and TLS frame messages by octet counting (RFC 6587,
// RFC 5425). Over UDP nothing acknowledges a message: prefer TCP or TLS.
type Syslog struct {
	network, address string
	host             string
	dial             func(ctx context.Context) (net.Conn, error)

	mu   sync.Mutex
	conn net.Conn
}

// Syslog severities keyturn uses, and the facility (13, log audit).
const (
	facilityLogAudit = 13
	severityWarning  = 4
	severityNotice   = 5
)

// NewSyslog returns a syslog sink; network is "udp", "tcp" or "tls" (tlsConfig then holds the
// roots to trust; nil means the system's).
func NewSyslog(network, address string, tlsConfig *tls.Config) (*Syslog, error) {
	if _, _, err := net.SplitHostPort(address); err != nil {
		return nil, fmt.Errorf("audit syslog: %q is not host:port", address)
	}
	s := &Syslog{network: network, address: address, host: "-"}
	if h, err := os.Hostname(); err == nil && h != "" {
		s.host = h
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	switch network {
	case "udp", "tcp":
		s.dial = func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, network, address) }
	case "tls":
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if tlsConfig != nil {
			cfg = tlsConfig.Clone()
			cfg.MinVersion = max(cfg.MinVersion, tls.VersionTLS12)
		}
		td := &tls.Dialer{NetDialer: d, Config: cfg}
		s.dial = func(ctx context.Context) (net.Conn, error) { return td.DialContext(ctx, "tcp", address) }
	default:
		return nil, fmt.Errorf("audit syslog: network %q is not udp, tcp or tls", network)
	}
	return s, nil
}

// Send writes one message per event (over UDP a datagram each), connecting first if need be.
// A failed write drops the connection, so that the batch goes again over a new one.
func (s *Syslog) Send(ctx context.Context, events []audit.Exported) error {
	var stream []byte
	for _, e := range events {
		msg, err := s.message(e)
		if err != nil {
			return err
		}
		if s.network == "udp" {
			if err := s.write(ctx, msg); err != nil {
				return err
			}
			continue
		}
		stream = append(append(strconv.AppendInt(stream, int64(len(msg)), 10), ' '), msg...)
	}
	if len(stream) == 0 {
		return nil
	}
	return s.write(ctx, stream)
}

func (s *Syslog) write(ctx context.Context, b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		c, err := s.dial(ctx)
		if err != nil {
			return fmt.Errorf("audit syslog %s: %w", s.address, err)
		}
		s.conn = c
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := s.conn.Write(b); err != nil {
		s.conn.Close()
		s.conn = nil
		return fmt.Errorf("audit syslog %s: %w", s.address, err)
	}
	return nil
}

// message formats an event as RFC 5424: <PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG.
func (s *Syslog) message(e audit.Exported) ([]byte, error) {
	body, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	severity := severityNotice
	if strings.HasSuffix(e.Type, "_fail") || strings.HasSuffix(e.Type, "_needs_attention") || strings.HasSuffix(e.Type, "_drift") {
		severity = severityWarning
	}
	msgID := e.Type
	if len(msgID) > 32 {
		msgID = msgID[:32]
	}
	head := fmt.Sprintf("<%d>1 %s %s keyturn %d %s - ", facilityLogAudit*8+severity,
		e.CreatedAt.UTC().Format("2006-01-02T15:04:05.000000Z07:00"), s.host, os.Getpid(), msgID)
	return append([]byte(head), body...), nil
}

// Close closes the connection.
func (s *Syslog) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}
