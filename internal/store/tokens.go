package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TokenRecord is what leafd remembers of a token it issued: never the
// token itself, only what identifies it, so the database cannot leak a
// usable token.
type TokenRecord struct {
	ID        string     `json:"id"`
	Subject   string     `json:"subject"`
	Role      string     `json:"role"`
	KeyID     string     `json:"keyID"`
	IssuedAt  time.Time  `json:"issuedAt"`
	ExpiresAt time.Time  `json:"expiresAt"`
	RevokedAt *time.Time `json:"revokedAt,omitempty"`
}

// ErrUnknownToken is returned for a token ID leafd never issued.
var ErrUnknownToken = errors.New("unknown token")

// PutToken records an issued token.
func (s *Store) PutToken(r TokenRecord) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		if b.Get([]byte(r.ID)) != nil {
			return fmt.Errorf("token %s: already recorded", r.ID)
		}
		return b.Put([]byte(r.ID), v)
	})
}

// Token returns one token record; ErrUnknownToken if there is none.
func (s *Store) Token(id string) (TokenRecord, error) {
	var r TokenRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketTokens).Get([]byte(id))
		if v == nil {
			return fmt.Errorf("token %q: %w", id, ErrUnknownToken)
		}
		return json.Unmarshal(v, &r)
	})
	return r, err
}

// Tokens returns every token record, oldest first.
func (s *Store) Tokens() ([]TokenRecord, error) {
	var out []TokenRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTokens).ForEach(func(k, v []byte) error {
			var r TokenRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("token %s: %w", k, err)
			}
			out = append(out, r)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool {
		if !out[i].IssuedAt.Equal(out[j].IssuedAt) {
			return out[i].IssuedAt.Before(out[j].IssuedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, err
}

// RevokeToken marks a token revoked at t. Revoking it again keeps the
// first time.
func (s *Store) RevokeToken(id string, t time.Time) (TokenRecord, error) {
	var r TokenRecord
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		v := b.Get([]byte(id))
		if v == nil {
			return fmt.Errorf("token %q: %w", id, ErrUnknownToken)
		}
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		if r.RevokedAt == nil {
			t := t.UTC()
			r.RevokedAt = &t
		}
		nv, err := json.Marshal(r)
		if err != nil {
			return err
		}
		return b.Put([]byte(id), nv)
	})
	return r, err
}

// PruneTokens forgets tokens that expired before cutoff and returns how
// many. Forgetting is safe: a token leafd has no record of is refused, as
// an expired one is; the records only kept it listable for a while.
func (s *Store) PruneTokens(cutoff time.Time) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		var stale [][]byte
		err := b.ForEach(func(k, v []byte) error {
			var r TokenRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("token %s: %w", k, err)
			}
			if r.ExpiresAt.Before(cutoff) {
				stale = append(stale, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range stale {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(stale)
		return nil
	})
	return n, err
}
