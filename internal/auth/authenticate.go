package auth

import (
	"crypto/x509"
	"net/http"
	"strings"
)

// TokenVerifier checks a bearer token (package token implements it).
type TokenVerifier interface {
	Verify(raw string) (Identity, error)
}

// Authenticator turns a request into an identity.
type Authenticator struct {
	// Unix maps socket peers to roles.
	Unix *UnixPolicy
	// Subjects maps client certificates to roles; nil without a TLS
	// listener.
	Subjects *SubjectPolicy
	// Tokens verifies bearer tokens; nil when tokens are off.
	Tokens TokenVerifier
	// CertCheck, if set, re-verifies a client certificate chain against
	// the TLS material in force now (CA bundle, CRL, expiry): a handshake
	// long ago on a kept-alive connection proves nothing about today.
	CertCheck func([]*x509.Certificate) error
}

// Authenticate identifies the caller of r. A request that carries a bearer
// token is the token's holder (a bad token is a 401, never a fall-back to
// the transport). Otherwise the transport says who it is: the peer
// credentials on the unix socket, the verified client certificate on TLS.
// A caller that proved nothing gets an unauthenticated identity, which
// only public endpoints accept.
func (a *Authenticator) Authenticate(r *http.Request) (Identity, *Error) {
	if h := r.Header.Get("Authorization"); h != "" {
		return a.bearer(h)
	}
	if pc, ok := PeerFrom(r.Context()); ok && a.Unix != nil {
		return a.Unix.Identity(pc), nil
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && a.Subjects != nil {
		if a.CertCheck != nil {
			if err := a.CertCheck(r.TLS.VerifiedChains[0]); err != nil {
				return Identity{}, Unauthenticated("%v", err)
			}
		}
		return a.Subjects.Identity(r.TLS.VerifiedChains[0][0]), nil
	}
	return Identity{Via: ViaNone, Subject: "anonymous"}, nil
}

func (a *Authenticator) bearer(h string) (Identity, *Error) {
	scheme, raw, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(raw) == "" {
		return Identity{}, Unauthenticated("Authorization header: want \"Bearer TOKEN\"")
	}
	if a.Tokens == nil {
		return Identity{}, Unauthenticated("bearer tokens are not enabled on this leafd (no tokens.keyFile or tokens.keyCredential)")
	}
	id, err := a.Tokens.Verify(strings.TrimSpace(raw))
	if err != nil {
		return Identity{}, Unauthenticated("%v", err)
	}
	return id, nil
}
