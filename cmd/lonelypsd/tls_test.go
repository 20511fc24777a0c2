package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/lonelypsd/lonelypsd/api/client"
	"github.com/lonelypsd/lonelypsd/api/ws/wsclient"
	"github.com/lonelypsd/lonelypsd/cmd/lonelypsd/lonelypsdtest"
)

// testCA issues certificates for 127.0.0.1.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	der, key := certify(t, &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lonelypsd test CA"},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, nil, nil)
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) issue(t *testing.T, serial int64) (certPEM, keyPEM []byte) {
	t.Helper()
	der, key := certify(t, &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}, ca.cert, ca.key)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// certify makes a P-256 key and a certificate of it from tmpl, valid from
// an hour ago to an hour from now and signed by parent's key (by the new
// key when parent is nil), and returns the certificate's DER and the key.
func certify(t *testing.T, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

func (ca *testCA) httpClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.pem)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// startTLSNode runs a node serving https with a certificate of ca.
func startTLSNode(t *testing.T, ca *testCA, trustCA bool) *lonelypsdtest.Proc {
	t.Helper()
	dir := t.TempDir()
	certPEM, keyPEM := ca.issue(t, 2)
	for name, b := range map[string][]byte{"cert.pem": certPEM, "key.pem": keyPEM, "ca.pem": ca.pem} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", lonelypsdtest.FreePort(t))
	args := []string{"serve", "--node-id", "n1", "--bootstrap", "--http-addr", httpAddr,
		"--raft-addr", fmt.Sprintf("127.0.0.1:%d", lonelypsdtest.FreePort(t)), "--data-dir", filepath.Join(dir, "data"),
		"--tls-cert", filepath.Join(dir, "cert.pem"), "--tls-key", filepath.Join(dir, "key.pem"), "--delivery-timeout", "2s"}
	if trustCA {
		args = append(args, "--tls-ca", filepath.Join(dir, "ca.pem"))
	}
	p := lonelypsdtest.NewProc(t, binPath, "https://"+httpAddr, dir, args)
	p.HTTPClient = ca.httpClient()
	p.Start()
	return p
}

func startTLSSubscriber(t *testing.T, ca *testCA) (*client.Subscriber, string) {
	t.Helper()
	certPEM, keyPEM := ca.issue(t, 3)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	sub := client.NewSubscriber()
	srv := httptest.NewUnstartedServer(sub)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return sub, srv.URL + "/v1/receive"
}

// TestHTTPSDelivery: an https node delivers to an https subscriber whose
// certificate its --tls-ca trusts, and to no other; it does not answer
// plain http.
func TestHTTPSDelivery(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trustCA bool
		want    uint32
	}{{"trusted CA", true, 1}, {"unknown CA", false, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			ca := newTestCA(t)
			node := startTLSNode(t, ca, tc.trustCA)
			ctx := ctxT(t)
			c := node.Client()
			sub, url := startTLSSubscriber(t, ca)
			if err := c.SubscribeExact(ctx, url, []byte("t"), ""); err != nil {
				t.Fatal(err)
			}
			if n, err := c.Notify(ctx, []byte("t"), []byte("over https")); err != nil || n != tc.want {
				t.Fatalf("notify: %d, %v; want %d", n, err, tc.want)
			}
			if got := sub.Received(); uint32(len(got)) != tc.want || (tc.want == 1 && string(got[0].Message) != "over https") {
				t.Fatalf("received %+v", got)
			}
			// Plain http to an https node is refused by the server.
			if resp, err := http.Get("http" + node.HTTP[len("https"):] + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					t.Fatal("the https node answered plain http")
				}
			}
		})
	}
}

// TestWebsocketOverTLS: a wss subscriber of an https node gets short
// messages (the node's batches) and a long one (written past the batch)
// intact, through TLS, whether they come from an https notifier or a
// wss one. The node reaches its own websockets without trusting its own
// certificate (no --tls-ca).
func TestWebsocketOverTLS(t *testing.T) {
	ca := newTestCA(t)
	node := startTLSNode(t, ca, false)
	ctx := ctxT(t)
	opts := wsclient.Options{DialOptions: &websocket.DialOptions{HTTPClient: ca.httpClient()}}
	sub := dialWS(t, node, opts)
	pub := dialWS(t, node, opts)
	if err := sub.SubscribeExact(ctx, []byte("t")); err != nil {
		t.Fatal(err)
	}
	long := bytes.Repeat([]byte("0123456789abcdef"), 32<<10) // 512 KiB
	msgs := [][]byte{[]byte("one"), []byte("two"), long, []byte("three")}
	for i, m := range msgs {
		var n uint64
		var err error
		if i%2 == 0 {
			var k uint32
			k, err = node.Client().Notify(ctx, []byte("t"), m)
			n = uint64(k)
		} else {
			n, err = pub.Notify(ctx, []byte("t"), m)
		}
		if err != nil || n != 1 {
			t.Fatalf("notify %d: %d, %v", i, n, err)
		}
	}
	for i, want := range msgs {
		if got := lonelypsdtest.NextMessage(t, sub, 10*time.Second); !bytes.Equal(got.Data, want) {
			t.Fatalf("message %d: %d bytes, want %d", i, len(got.Data), len(want))
		}
	}
}
