package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyturn/keyturn/internal/cli"
	"github.com/keyturn/keyturn/internal/config"
)

// The server's own variables, which health reads so that, beside the server (a container's
// HEALTHCHECK, a systemd ExecStartPost), it needs no flag.
const (
	envListen      = "KEYTURN_LISTEN"
	envTLSCertFile = "KEYTURN_TLS_CERT_FILE"
)

func newHealthCommand() *cobra.Command {
	var listen, certFile string
	var output cli.Output
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "health [--listen ADDR] [--tls-cert-file F] [--timeout 5s]",
		Short: "Exit 0 when the local server is ready (its /readyz answers 200), else 1",
		Long: `Ask the keyturn server listening on ADDR whether it is ready (GET /readyz), for a container's
HEALTHCHECK or a probe: exit 0 when it is, 1 when it is not or does not answer.

ADDR is the server's listen address (--listen, else KEYTURN_LISTEN, else ` + config.Defaults().Listen + `); a
wildcard host (0.0.0.0, ::) is reached on loopback. When the server serves https (--tls-cert-file,
else KEYTURN_TLS_CERT_FILE), health accepts exactly the certificate in that file, whatever
names it holds. It sends no credential.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if listen == "" {
				listen = os.Getenv(envListen)
			}
			if listen == "" {
				listen = config.Defaults().Listen
			}
			if certFile == "" {
				certFile = os.Getenv(envTLSCertFile)
			}
			format, err := output.Format()
			if err != nil {
				return err
			}
			if timeout <= 0 {
				return cli.Usagef("--timeout %s: want a positive duration", timeout)
			}
			url, err := probeURL(listen, certFile != "")
			if err != nil {
				return cli.UsageError{Err: err}
			}
			// Straight to the server: no proxy from the environment, no redirect followed.
			tr := &http.Transport{Proxy: nil}
			if certFile != "" {
				if tr.TLSClientConfig, err = pinnedTLS(certFile); err != nil {
					return err
				}
			}
			client := &http.Client{Timeout: timeout, Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			}}
			if err := probe(cmd.Context(), client, url); err != nil {
				return err
			}
			if format == cli.FormatTable {
				_, err := fmt.Fprintln(cmd.OutOrStdout(), "ready")
				return err
			}
			return cli.WriteAs(cmd.OutOrStdout(), format, map[string]string{"status": "ready"})
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "the server's listen address (default: KEYTURN_LISTEN, else "+config.Defaults().Listen+")")
	cmd.Flags().StringVar(&certFile, "tls-cert-file", "", "the server's PEM certificate, when it serves https (default: KEYTURN_TLS_CERT_FILE)")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for the answer")
	cli.AddOutputFlag(cmd, &output)
	return cmd
}

// probeURL returns the readiness URL of a server listening on listen: a wildcard host is
// reached on loopback.
func probeURL(listen string, https bool) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("--listen %q is not host:port", listen)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	scheme := "http"
	if https {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/readyz", nil
}

// pinnedTLS returns a TLS configuration that accepts only the certificate the server serves:
// the first one in certFile. Names are not checked: the probe may reach the server on an
// address its certificate does not name, and sends nothing secret.
func pinnedTLS(certFile string) (*tls.Config, error) {
	b, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("tls certificate: %w", err)
	}
	var leaf []byte
	for block, rest := pem.Decode(b); block != nil; block, rest = pem.Decode(rest) {
		if block.Type == "CERTIFICATE" {
			leaf = block.Bytes
			break
		}
	}
	if leaf == nil {
		return nil, fmt.Errorf("tls certificate: %s holds no PEM certificate", certFile)
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the pin below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !bytes.Equal(raw[0], leaf) {
				return errors.New("the server's certificate is not the one in the certificate file")
			}
			return nil
		},
	}, nil
}

// probe asks url and fails unless it answers 200.
func probe(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("not ready: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("not ready: %s answered %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}
