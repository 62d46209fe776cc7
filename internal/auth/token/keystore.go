// Package token issues and verifies leafd's bearer tokens: JWTs signed
// with Ed25519 (EdDSA), carrying a role, a subject, an expiry and the ID
// of the key that signed them. Only tokens signed by the current key, and
// recorded and not revoked in the state store, are accepted: replacing the
// key invalidates every older token.
package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/leaf-ebpf/leaf/internal/secretfile"
)

// Key is a signing key and its ID (derived from the public key, so the
// same key always has the same ID).
type Key struct {
	ID      string
	Private ed25519.PrivateKey
}

// Public returns the key's public half.
func (k Key) Public() ed25519.PublicKey { return k.Private.Public().(ed25519.PublicKey) }

// KeyStore yields the signing key in force. A file is the only store
// today; a cloud KMS would implement the same interface (signing remotely
// would need a Sign method in place of the private key, which is why the
// interface is this small).
type KeyStore interface {
	// Current returns the key to sign and verify with now. An error means
	// no token can be issued or accepted (fail closed).
	Current() (Key, error)
	// Describe names the store for logs ("file /etc/leaf/token.key").
	Describe() string
}

// FileKeyStore reads a PEM (PKCS #8) Ed25519 private key from a file,
// re-reading it whenever the file changes: replacing the file rotates the
// key. The file is read through secretfile: opened once without following
// a link, checked on the descriptor, in a directory chain nobody else can
// write.
type FileKeyStore struct {
	path string

	mu    sync.Mutex
	stamp secretfile.Stat
	key   Key
	err   error
}

// OpenFile opens a key file. It fails if the file is missing, does not hold
// an Ed25519 key, is owned by a user other than root or leafd's, is
// readable or writable by group or others, or lies in a directory another
// user could write.
func OpenFile(path string) (*FileKeyStore, error) {
	ks := &FileKeyStore{path: path}
	if _, err := ks.Current(); err != nil {
		return nil, err
	}
	return ks, nil
}

// OpenCredential opens a systemd credential (LoadCredential= or
// SetCredentialEncrypted= in the unit): the file name in
// $CREDENTIALS_DIRECTORY, which systemd makes readable only by the service.
func OpenCredential(name string) (*FileKeyStore, error) {
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	if dir == "" {
		return nil, fmt.Errorf("token key credential %q: $CREDENTIALS_DIRECTORY is not set (is leafd running under systemd with LoadCredential=%s:...?)", name, name)
	}
	if name == "" || filepath.Base(name) != name {
		return nil, fmt.Errorf("token key credential %q: want a plain credential name", name)
	}
	return OpenFile(filepath.Join(dir, name))
}

// Describe names the key file.
func (ks *FileKeyStore) Describe() string { return "file " + ks.path }

// Current returns the key, re-reading the file if it changed since the
// last call. A stat per call is cheap next to a signature check; it only
// decides whether to read again, what is used is checked on the
// descriptor it was read from.
func (ks *FileKeyStore) Current() (Key, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	stamp, err := secretfile.StatPath(ks.path)
	if err != nil {
		ks.err = fmt.Errorf("token key: %w", err)
		ks.stamp = secretfile.Stat{}
		return Key{}, ks.err
	}
	if stamp == ks.stamp && ks.err == nil {
		return ks.key, nil
	}
	f, err := secretfile.Read(ks.path, secretfile.Private)
	if err != nil {
		ks.key, ks.err, ks.stamp = Key{}, fmt.Errorf("token key %w", err), secretfile.Stat{}
		return Key{}, ks.err
	}
	ks.stamp = f.Stat
	ks.key, ks.err = ParseKey(f.Data)
	return ks.key, ks.err
}

// ParseKey reads a PEM "PRIVATE KEY" (PKCS #8) holding an Ed25519 key, as
// `openssl genpkey -algorithm ed25519` or GenerateKeyFile writes.
func ParseKey(data []byte) (Key, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return Key{}, errors.New("token key: want a PEM \"PRIVATE KEY\" block (PKCS #8 Ed25519)")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return Key{}, fmt.Errorf("token key: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return Key{}, fmt.Errorf("token key: %T is not an Ed25519 key", k)
	}
	return Key{ID: KeyID(priv.Public().(ed25519.PublicKey)), Private: priv}, nil
}

// KeyID is the first 16 hex digits of the SHA-256 of the public key.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// GenerateKeyFile writes a fresh key to path with mode 0600, replacing any
// key there in one rename (so leafd never reads half a key). Returns the
// new key's ID.
func GenerateKeyFile(path string) (string, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".token-key-*")
	if err != nil {
		return "", fmt.Errorf("token key: %w", err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes the file 0600 before anything is written.
	if err := pem.Encode(tmp, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		tmp.Close()
		return "", fmt.Errorf("token key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("token key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("token key: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("token key: %w", err)
	}
	return KeyID(priv.Public().(ed25519.PublicKey)), nil
}
