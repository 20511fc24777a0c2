package broadcaster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// loadTLS reads the API's certificate (server side) and the extra
// certificate authorities trusted when calling subscribers and peers
// (client side). Either may be nil: plain http, system roots.
func loadTLS(cfg Config) (server, client *tls.Config, err error) {
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, nil, errors.New("--tls-cert and --tls-key go together")
	}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, nil, fmt.Errorf("tls certificate: %w", err)
		}
		server = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if cfg.TLSCA != "" {
		pem, err := os.ReadFile(cfg.TLSCA)
		if err != nil {
			return nil, nil, fmt.Errorf("tls ca: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("tls ca %s: no PEM certificate found", cfg.TLSCA)
		}
		client = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return server, client, nil
}
