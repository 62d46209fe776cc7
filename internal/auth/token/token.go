package token

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
	"unicode"

	"github.com/golang-jwt/jwt/v5"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/auth"
	"github.com/leaf-ebpf/leaf/internal/store"
)

// issuer is the iss claim of every leafd token.
const issuer = "leafd"

// Store persists issued-token metadata and revocations; *store.Store is
// the implementation.
type Store interface {
	PutToken(store.TokenRecord) error
	Token(id string) (store.TokenRecord, error)
	Tokens() ([]store.TokenRecord, error)
	RevokeToken(id string, at time.Time) (store.TokenRecord, error)
}

// Service issues, verifies, lists and revokes tokens.
type Service struct {
	Keys  KeyStore
	Store Store
	// DefaultTTL applies when a request gives none; MaxTTL caps any.
	DefaultTTL, MaxTTL time.Duration
	// Now is the clock (time.Now if nil).
	Now func() time.Time
	// KeyProblem, if set, learns why the signing key is unusable (its
	// path, mode, owner): that is for leafd's log, never for the caller
	// of a 401.
	KeyProblem func(error)
}

type claims struct {
	Role string `json:"role"`
	jwt.RegisteredClaims
}

// ErrKeyUnavailable is what a token caller learns when leafd cannot use
// its signing key; the reason goes to leafd's log only.
var ErrKeyUnavailable = errors.New("token rejected: leafd cannot use its token signing key now (its log says why)")

// ErrBadRequest marks a token request that cannot be honoured (bad role,
// subject or TTL): the caller's fault, a 400.
var ErrBadRequest = errors.New("bad token request")

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Issue signs a token for req and records it.
func (s *Service) Issue(req v1.TokenRequest) (v1.IssuedToken, error) {
	role, err := auth.ParseRole(req.Role)
	if err != nil {
		return v1.IssuedToken{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if err := checkSubject(req.Subject); err != nil {
		return v1.IssuedToken{}, err
	}
	ttl, err := s.ttl(req.TTL)
	if err != nil {
		return v1.IssuedToken{}, err
	}
	key, err := s.Keys.Current()
	if err != nil {
		return v1.IssuedToken{}, err
	}
	now := s.now().UTC().Truncate(time.Second)
	rec := store.TokenRecord{ID: newID(), Subject: req.Subject, Role: role.String(), KeyID: key.ID, IssuedAt: now, ExpiresAt: now.Add(ttl)}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims{Role: rec.Role, RegisteredClaims: jwt.RegisteredClaims{
		Issuer: issuer, Subject: rec.Subject, ID: rec.ID,
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(rec.ExpiresAt),
	}})
	t.Header["kid"] = key.ID
	signed, err := t.SignedString(key.Private)
	if err != nil {
		return v1.IssuedToken{}, fmt.Errorf("sign token: %w", err)
	}
	// Record before handing it out: a token leafd has no record of is
	// refused, so a failed write cannot leave a usable token behind.
	if err := s.Store.PutToken(rec); err != nil {
		return v1.IssuedToken{}, fmt.Errorf("record token: %w", err)
	}
	return v1.IssuedToken{Token: signed, Info: s.info(rec, key.ID)}, nil
}

func checkSubject(sub string) error {
	if sub == "" || len(sub) > 256 {
		return fmt.Errorf("%w: subject must be 1 to 256 characters", ErrBadRequest)
	}
	for _, r := range sub {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: subject %q has a non-printable character", ErrBadRequest, sub)
		}
	}
	return nil
}

func (s *Service) ttl(v string) (time.Duration, error) {
	if v == "" {
		return s.DefaultTTL, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%w: ttl %q: want a duration such as 24h", ErrBadRequest, v)
	}
	if d <= 0 || d > s.MaxTTL {
		return 0, fmt.Errorf("%w: ttl %s: want more than 0 and at most %s", ErrBadRequest, d, s.MaxTTL)
	}
	return d, nil
}

func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Verify checks a bearer token: signature by the current key, issuer,
// expiry, and that leafd issued it and has not revoked it. The error says
// which check failed.
func (s *Service) Verify(raw string) (auth.Identity, error) {
	key, err := s.Keys.Current()
	if err != nil {
		if s.KeyProblem != nil {
			s.KeyProblem(err)
		}
		return auth.Identity{}, ErrKeyUnavailable
	}
	var c claims
	_, err = jwt.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		if kid, _ := t.Header["kid"].(string); kid != key.ID {
			return nil, fmt.Errorf("signed with key %q, not the current signing key %q (was the key rotated?)", kid, key.ID)
		}
		return key.Public(), nil
	}, jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}), jwt.WithIssuer(issuer),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithTimeFunc(s.now))
	if err != nil {
		return auth.Identity{}, fmt.Errorf("token rejected: %w", err)
	}
	rec, err := s.Store.Token(c.ID)
	if errors.Is(err, store.ErrUnknownToken) {
		return auth.Identity{}, fmt.Errorf("token rejected: leafd has no record of token %q", c.ID)
	}
	if err != nil {
		return auth.Identity{}, fmt.Errorf("token rejected: %w", err)
	}
	if rec.RevokedAt != nil {
		return auth.Identity{}, fmt.Errorf("token rejected: token %s was revoked at %s", rec.ID, rec.RevokedAt.Format(time.RFC3339))
	}
	// The record's expiry rules, whatever the token says: a token leafd
	// signed cannot claim a longer life than leafd recorded.
	if !s.now().Before(rec.ExpiresAt) {
		return auth.Identity{}, fmt.Errorf("token rejected: token %s expired at %s", rec.ID, rec.ExpiresAt.Format(time.RFC3339))
	}
	role, err := auth.ParseRole(c.Role)
	if err != nil || rec.Role != c.Role || rec.Subject != c.Subject || c.ExpiresAt == nil || c.ExpiresAt.Unix() != rec.ExpiresAt.Unix() {
		return auth.Identity{}, fmt.Errorf("token rejected: claims of token %s do not match leafd's record", rec.ID)
	}
	return auth.Identity{Via: auth.ViaToken, Subject: c.Subject, Role: role, Key: "token:" + c.ID, TokenID: c.ID}, nil
}

// List returns every token leafd issued, with its state.
func (s *Service) List() ([]v1.TokenInfo, error) {
	recs, err := s.Store.Tokens()
	if err != nil {
		return nil, err
	}
	current := ""
	if key, err := s.Keys.Current(); err == nil {
		current = key.ID
	}
	out := make([]v1.TokenInfo, 0, len(recs))
	for _, r := range recs {
		out = append(out, s.info(r, current))
	}
	return out, nil
}

// Revoke revokes a token by ID; store.ErrUnknownToken if leafd never
// issued it.
func (s *Service) Revoke(id string) (v1.TokenInfo, error) {
	rec, err := s.Store.RevokeToken(id, s.now())
	if err != nil {
		return v1.TokenInfo{}, err
	}
	current := ""
	if key, err := s.Keys.Current(); err == nil {
		current = key.ID
	}
	return s.info(rec, current), nil
}

func (s *Service) info(r store.TokenRecord, currentKey string) v1.TokenInfo {
	state := v1.TokenValid
	switch {
	case r.RevokedAt != nil:
		state = v1.TokenRevoked
	case !s.now().Before(r.ExpiresAt):
		state = v1.TokenExpired
	case r.KeyID != currentKey:
		state = v1.TokenStaleKey
	}
	return v1.TokenInfo{ID: r.ID, Subject: r.Subject, Role: r.Role, KeyID: r.KeyID, IssuedAt: r.IssuedAt, ExpiresAt: r.ExpiresAt, RevokedAt: r.RevokedAt, State: state}
}
