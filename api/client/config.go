package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// BaseURL turns a broadcaster address, HOST:PORT or an http(s) URL, into
// the base URL a Client takes (no trailing slash). tls picks https for a
// bare HOST:PORT.
func BaseURL(addr string, tls bool) (string, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return "", errors.New("empty broadcaster address")
	}
	if !strings.Contains(addr, "://") {
		scheme := "http://"
		if tls {
			scheme = "https://"
		}
		addr = scheme + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return "", fmt.Errorf("broadcaster address %q: %w", addr, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("broadcaster address %q: want HOST:PORT or http(s)://HOST:PORT[/prefix]", addr)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// BaseURLs splits a comma-separated list of addresses (as --addr takes)
// with BaseURL.
func BaseURLs(list string, tls bool) ([]string, error) {
	var out []string
	for _, a := range strings.Split(list, ",") {
		if strings.TrimSpace(a) == "" {
			continue
		}
		b, err := BaseURL(a, tls)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	if len(out) == 0 {
		return nil, errors.New("no broadcaster address given")
	}
	return out, nil
}

// HTTPClientTrusting returns an http.Client that trusts the certificate
// authorities in the PEM file caFile besides the system's: for
// broadcasters with a private CA. "" returns http.DefaultClient.
func HTTPClientTrusting(caFile string) (*http.Client, error) {
	if caFile == "" {
		return http.DefaultClient, nil
	}
	conf, err := TLSTrusting(caFile)
	if err != nil {
		return nil, err
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = conf
	return &http.Client{Transport: t}, nil
}

// TLSTrusting returns a TLS client configuration that trusts the
// certificate authorities in the PEM file caFile besides the system's.
func TLSTrusting(caFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("tls ca: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls ca %s: no PEM certificate found", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}
