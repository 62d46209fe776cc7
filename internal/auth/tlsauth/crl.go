package tlsauth

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"github.com/leaf-ebpf/leaf/internal/secretfile"
)

// loadCRLs reads a CRL file (PEM blocks "X509 CRL", or one DER CRL) and
// checks each is signed by a CA of the bundle: an unsigned or foreign CRL
// is refused rather than trusted.
func loadCRLs(path string, cas []*x509.Certificate) ([]*x509.RevocationList, error) {
	f, err := secretfile.Read(path, secretfile.Public)
	if err != nil {
		return nil, fmt.Errorf("tls: CRL: %w", err)
	}
	data := f.Data
	var ders [][]byte
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type == "X509 CRL" {
			ders = append(ders, block.Bytes)
		}
	}
	if len(ders) == 0 {
		ders = [][]byte{data} // DER
	}
	var out []*x509.RevocationList
	for _, der := range ders {
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			return nil, fmt.Errorf("tls: CRL %s: %w", path, err)
		}
		if err := checkCRLSigner(crl, cas); err != nil {
			return nil, fmt.Errorf("tls: CRL %s: %w", path, err)
		}
		out = append(out, crl)
	}
	return out, nil
}

func checkCRLSigner(crl *x509.RevocationList, cas []*x509.Certificate) error {
	for _, ca := range cas {
		if bytes.Equal(ca.RawSubject, crl.RawIssuer) && crl.CheckSignatureFrom(ca) == nil {
			return nil
		}
	}
	return fmt.Errorf("issued by %q, which is not a CA of the client CA bundle (or the signature is bad)", crl.Issuer)
}

// checkRevoked refuses a chain in which a certificate is on its issuer's
// CRL.
func checkRevoked(crls []*x509.RevocationList, chain []*x509.Certificate) error {
	for _, c := range chain {
		for _, crl := range crls {
			if !bytes.Equal(crl.RawIssuer, c.RawIssuer) {
				continue
			}
			for _, e := range crl.RevokedCertificateEntries {
				if e.SerialNumber.Cmp(c.SerialNumber) == 0 {
					return fmt.Errorf("certificate %q (serial %s) is revoked by the CRL of %q", c.Subject, c.SerialNumber, crl.Issuer)
				}
			}
		}
	}
	return nil
}
