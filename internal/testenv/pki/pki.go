// Package pki makes certificate authorities, certificates and CRLs for
// tests with crypto/x509: valid, expired, not yet valid, under another
// root, with whatever SANs a test needs.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var serial atomic.Int64

func init() { serial.Store(time.Now().UnixNano() % 1e9) }

// CA is a certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// Parent is the issuer of an intermediate CA.
	Parent *CA
}

// Leaf is an issued certificate with its key.
type Leaf struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// Chain are the intermediates between Cert and the root.
	Chain []*x509.Certificate
}

// Options shape an issued certificate. Zero times mean valid from an hour
// ago for a year.
type Options struct {
	CN string
	// Org is the subject's organizations (Kubernetes reads them as the
	// user's groups).
	Org  []string
	DNS  []string
	URIs []string
	IPs  []string
	// RawSANs are written into the SAN extension byte for byte, as
	// "DNS:name" or "URI:name", without crypto/x509's parsing (which
	// would normalise a URI): for certificates a careless or hostile CA
	// issues. DNS, URIs and IPs must be empty with it.
	RawSANs []string
	// EKU replaces the default extended key usages (serverAuth and
	// clientAuth); NoEKU leaves the extension out.
	EKU       []x509.ExtKeyUsage
	NoEKU     bool
	NotBefore time.Time
	NotAfter  time.Time
}

func newKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// NewCA makes a self-signed root valid for ten years (or until notAfter,
// if given).
func NewCA(t testing.TB, name string, notAfter ...time.Time) *CA {
	t.Helper()
	key := newKey(t)
	end := time.Now().Add(10 * 365 * 24 * time.Hour)
	if len(notAfter) > 0 {
		end = notAfter[0]
	}
	tmpl := caTemplate(name, end)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: mustParse(t, der), Key: key}
}

func caTemplate(name string, end time.Time) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              end,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
}

// Intermediate makes a CA signed by ca.
func (ca *CA) Intermediate(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	der, err := x509.CreateCertificate(rand.Reader, caTemplate(name, ca.Cert.NotAfter), ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: mustParse(t, der), Key: key, Parent: ca}
}

// Issue makes a certificate for both server and client use.
func (ca *CA) Issue(t testing.TB, o Options) *Leaf {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: o.CN, Organization: o.Org},
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		DNSNames:     o.DNS,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(365 * 24 * time.Hour)
	}
	for _, u := range o.URIs {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	for _, ip := range o.IPs {
		tmpl.IPAddresses = append(tmpl.IPAddresses, parseIP(t, ip))
	}
	if o.RawSANs != nil {
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, rawSANs(t, o.RawSANs))
	}
	if o.EKU != nil {
		tmpl.ExtKeyUsage = o.EKU
	}
	if o.NoEKU {
		tmpl.ExtKeyUsage = nil
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	l := &Leaf{Cert: mustParse(t, der), Key: key}
	for p := ca; p.Parent != nil; p = p.Parent {
		l.Chain = append(l.Chain, p.Cert)
	}
	return l
}

// CRL returns a PEM CRL of ca revoking the given certificates, valid for
// a day.
func (ca *CA) CRL(t testing.TB, revoked ...*Leaf) []byte {
	t.Helper()
	return ca.CRLUntil(t, time.Now().Add(24*time.Hour), revoked...)
}

// CRLUntil is CRL with the given nextUpdate (in the past: a stale CRL).
func (ca *CA) CRLUntil(t testing.TB, next time.Time, revoked ...*Leaf) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(serial.Add(1)), ThisUpdate: next.Add(-48 * time.Hour), NextUpdate: next}
	for _, l := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: l.Cert.SerialNumber, RevocationTime: time.Now()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// PEM is the CA certificate in PEM.
func (ca *CA) PEM() []byte { return CertPEM(ca.Cert) }

// CertPEM encodes certificates in PEM, in order.
func CertPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// ChainPEM is the certificate followed by its intermediates.
func (l *Leaf) ChainPEM() []byte { return CertPEM(append([]*x509.Certificate{l.Cert}, l.Chain...)...) }

// KeyPEM is the private key in PKCS #8 PEM.
func (l *Leaf) KeyPEM(t testing.TB) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(l.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// Write writes the chain and key as dir/name.crt and dir/name.key (0600)
// and returns their paths.
func (l *Leaf) Write(t testing.TB, dir, name string) (cert, key string) {
	t.Helper()
	cert, key = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	WriteFile(t, cert, l.ChainPEM())
	WriteFile(t, key, l.KeyPEM(t))
	return cert, key
}

// WriteFile replaces path atomically (write then rename), as a careful
// operator or cert-manager would, with mode 0600.
func WriteFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func mustParse(t testing.TB, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rawSANs encodes a SAN extension holding the names exactly as given.
func rawSANs(t testing.TB, names []string) pkix.Extension {
	t.Helper()
	var seq []asn1.RawValue
	for _, n := range names {
		typ, v, _ := strings.Cut(n, ":")
		tag := map[string]int{"DNS": 2, "URI": 6}[typ]
		if tag == 0 {
			t.Fatalf("raw SAN %q: want DNS:… or URI:…", n)
		}
		seq = append(seq, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tag, Bytes: []byte(v)})
	}
	der, err := asn1.Marshal(seq)
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: der}
}
