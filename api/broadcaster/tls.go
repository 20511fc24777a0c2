package broadcaster

import (
	"crypto/tls"
	"errors"
	"fmt"

	apiclient "github.com/lonelypsd/lonelypsd/api/client"
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
		if client, err = apiclient.TLSTrusting(cfg.TLSCA); err != nil {
			return nil, nil, err
		}
	}
	return server, client, nil
}
