// Package store keeps leafd's record of what it applied: the desired-state
// document and, per attachment, the package, program, parameters and
// kernel object IDs. It is a bbolt database, so every commit is atomic and
// durable; the kernel and bpffs stay the truth for what is attached.
package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/leaf-ebpf/leaf/internal/desired"
	"github.com/leaf-ebpf/leaf/internal/manifest"
)

var (
	bucketMeta        = []byte("meta")
	bucketAttachments = []byte("attachments")
	bucketTokens      = []byte("tokens")
	keyDesired        = []byte("desired")
	keySchema         = []byte("schema")
	keyIntent         = []byte("intent")
	keyBPFStats       = []byte("bpfStats")
)

const schemaVersion = "1"

// PackageRef pins the package version an attachment runs.
type PackageRef struct {
	Name       string `json:"name"`
	Version    string `json:"version"`
	Digest     string `json:"digest"`
	Repository string `json:"repository"`
	// Trust is what leafd verified before loading: signed,
	// unsigned-allowed or builtin, and who signed.
	Trust   string   `json:"trust,omitempty"`
	Signers []Signer `json:"signers,omitempty"`
}

// Signer is a verified signature's role and key.
type Signer struct {
	Role  string `json:"role"`
	Key   string `json:"key"`
	KeyID string `json:"keyID"`
}

// Record is what leafd applied for one attachment.
type Record struct {
	Name       string             `json:"name"`
	Attachment desired.Attachment `json:"attachment"`
	Package    PackageRef         `json:"package"`
	// Program is the package's program name.
	Program string `json:"program"`
	// ConstParams were set at load time; changing one needs a reload.
	ConstParams map[string]any `json:"constParams,omitempty"`
	// MapParams were written into maps; changing one needs no reload.
	MapParams map[string]any `json:"mapParams,omitempty"`
	ProgramID uint32         `json:"programID"`
	// ProgramTag is the kernel's tag of the program (a hash of its
	// instructions), compared at every plan with the running program's.
	ProgramTag string            `json:"programTag,omitempty"`
	LinkID     uint32            `json:"linkID"`
	MapIDs     map[string]uint32 `json:"mapIDs,omitempty"`
	// Metrics are the package's declared metrics, kept with the record so
	// that a scrape reads them without asking a repository.
	Metrics []manifest.Metric `json:"metrics,omitempty"`
	// Records are the package's ring and perf buffers leaf tail decodes,
	// each with its record type's BTF.
	Records []RecordStream `json:"records,omitempty"`
	// Chain is set for members of an XDP or TC chain; LinkID is then the
	// hook's link.
	Chain     *ChainMember `json:"chain,omitempty"`
	LoadedAt  time.Time    `json:"loadedAt"`
	UpdatedAt time.Time    `json:"updatedAt"`
}

// ChainMember is an attachment's place in its hook's chain.
type ChainMember struct {
	// Hook is the hook key (desired.Hook.Key).
	Hook string `json:"hook"`
	// Index is the position, 0 first.
	Index     int     `json:"index"`
	Priority  int     `json:"priority"`
	ProceedOn []int32 `json:"proceedOn"`
	// Mode is rewrite or cooperative; Map the PROG_ARRAY holding the next
	// member.
	Mode string `json:"mode"`
	Map  string `json:"map"`
	// CountRuns: the member counts its runs in its leaf_chain_runs map.
	CountRuns bool `json:"countRuns,omitempty"`
	// XDPMode is the hook's XDP attach mode, which the link fixes.
	XDPMode string `json:"xdpMode,omitempty"`
	// Fused: the member runs inside the hook's fused program (one program
	// built from every member's code), which its prog pin holds.
	Fused bool `json:"fused,omitempty"`
	// ModeReason says why the hook's chain is not fused, when it is not.
	ModeReason string `json:"modeReason,omitempty"`
	// FuseRefused keeps the verifier's refusal of this chain fused, so
	// that leafd does not try again until the chain changes.
	FuseRefused string `json:"fuseRefused,omitempty"`
}

// Store is the state database.
type Store struct {
	db *bolt.DB
	// intent is the journal file of the apply in progress (Begin), kept
	// open; bootID the kernel's boot this leafd runs in, which an intent
	// must match to count.
	intent *os.File
	bootID string
	// intentMu serializes the journal's writers and readers (the cache
	// pruner reads it beside applies): a read overlapping a write would
	// see a header that does not match its body and clear the journal.
	intentMu sync.Mutex
	// mu guards records, the committed records as Records last decoded
	// them (nil: read them from the database), and gen, which each commit
	// moves before and after it writes. leafd is the database's only
	// writer (bolt's file lock) and a read caches what it decoded only if
	// no commit started meanwhile, so records are what the database holds;
	// every apply, drift check and status read needs them, decoding them
	// is most of reading them, and no read waits for a commit's disk sync.
	mu      sync.Mutex
	records map[string]*Record
	gen     uint64
}

// Open opens (creating if needed) the database in dir. Only one leafd may
// hold it; a second fails after a short wait instead of blocking.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	path := filepath.Join(dir, "leaf.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("state store %s is locked: is another leafd running?", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open state store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(bucketAttachments); err != nil {
			return err
		}
		// Added after schema 1 shipped; creating it on open keeps old
		// databases readable without a schema bump.
		if _, err := tx.CreateBucketIfNotExists(bucketTokens); err != nil {
			return err
		}
		if v := meta.Get(keySchema); v != nil && string(v) != schemaVersion {
			return fmt.Errorf("state store schema %s is not supported (want %s)", v, schemaVersion)
		}
		return meta.Put(keySchema, []byte(schemaVersion))
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open state store %s: %w", path, err)
	}
	intent, err := os.OpenFile(filepath.Join(dir, intentFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open intent journal: %w", err)
	}
	return &Store{db: db, intent: intent, bootID: bootID()}, nil
}

// bootIDFile names the kernel's boot: a random UUID drawn at every boot.
const bootIDFile = "/proc/sys/kernel/random/boot_id"

func bootID() string {
	b, err := os.ReadFile(bootIDFile)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Close closes the database.
func (s *Store) Close() error {
	s.intent.Close()
	return s.db.Close()
}

// Desired returns the last committed desired state, or an empty one.
func (s *Store) Desired() (*desired.State, error) {
	var st *desired.State
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keyDesired)
		if v == nil {
			st = desired.Empty()
			return nil
		}
		st = &desired.State{}
		return json.Unmarshal(v, st)
	})
	if err != nil {
		return nil, fmt.Errorf("read desired state: %w", err)
	}
	return st, nil
}

// Records returns every attachment record by name. The map is the
// caller's; the records are shared by every caller until the next commit
// and must not be modified (copy a record to change it).
func (s *Store) Records() (map[string]*Record, error) {
	s.mu.Lock()
	if s.records != nil {
		defer s.mu.Unlock()
		return maps.Clone(s.records), nil
	}
	gen := s.gen
	s.mu.Unlock()
	out := map[string]*Record{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAttachments).ForEach(func(k, v []byte) error {
			var r Record
			// UseNumber keeps 64-bit parameter values exact.
			dec := json.NewDecoder(bytes.NewReader(v))
			dec.UseNumber()
			if err := dec.Decode(&r); err != nil {
				return fmt.Errorf("record %s: %w", k, err)
			}
			out[string(k)] = &r
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read records: %w", err)
	}
	s.mu.Lock()
	if s.gen == gen {
		s.records = out
	}
	s.mu.Unlock()
	return maps.Clone(out), nil
}

// Intent is the journal entry of an apply in progress: written before
// leafd touches the kernel, cleared once the commit that records the
// outcome is durable (or by Abort once a failed apply has been undone).
// An intent found at start-up means leafd died mid-apply: start-up
// finishes it by applying Desired again, or falls back to the committed
// state.
//
// The intent lives in its own file (intentFile), written without a disk
// sync. What it describes — programs, links and pins being changed —
// lives in the kernel, which keeps it through leafd's death but not
// through the machine's. So the intent must survive leafd being killed,
// which any write does (the page cache is the kernel's), and is worthless
// after a reboot, which is why it carries the boot's ID and one from
// another boot is ignored. A sync would buy nothing and cost every apply two of them
// before its first program loads — and the wait for the disk lets the
// kernel's scheduler tick start an RCU grace period that the apply's
// attach must then wait out before its own (docs/benchmarks.md).
// The commit, which is the operator's record, is synced.
type Intent struct {
	// Desired is the document the apply was making true.
	Desired *desired.State `json:"desired"`
	Started time.Time      `json:"started"`
	// Packages are the packages admitted for it, so that start-up can
	// finish it from the package cache with every repository down.
	Packages []PackageRef `json:"packages,omitempty"`
}

// intentFile is the intent's file in the state directory. It is written
// in place, never created or removed per apply (a new file costs the
// file system an allocation the next disk sync must write): a header
// (intentMagic, the length and CRC-32C of the JSON that follows) makes a
// write cut short by leafd's death read as no intent, which is right, for
// leafd then died before touching the kernel. A zero header is no intent.
const intentFile = "intent.json"

const (
	intentMagic  = 0x4c454146 // "LEAF"
	intentHeader = 12
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// intentOnDisk is an Intent with the boot it was written in.
type intentOnDisk struct {
	BootID string `json:"bootID"`
	Intent
}

// Begin journals an apply about to change the kernel, without a disk
// sync (see Intent).
func (s *Store) Begin(in Intent) error {
	v, err := json.Marshal(intentOnDisk{BootID: s.bootID, Intent: in})
	if err != nil {
		return err
	}
	var head [intentHeader]byte
	binary.LittleEndian.PutUint32(head[0:], intentMagic)
	binary.LittleEndian.PutUint32(head[4:], uint32(len(v)))
	binary.LittleEndian.PutUint32(head[8:], crc32.Checksum(v, castagnoli))
	s.intentMu.Lock()
	defer s.intentMu.Unlock()
	// The body first, then the header that makes it count.
	if _, err := s.intent.WriteAt(v, intentHeader); err != nil {
		return fmt.Errorf("write intent: %w", err)
	}
	if _, err := s.intent.WriteAt(head[:], 0); err != nil {
		return fmt.Errorf("write intent: %w", err)
	}
	return nil
}

// Abort removes the open intent without recording anything: the apply
// failed and was undone.
func (s *Store) Abort() error {
	if err := s.clearIntent(); err != nil {
		return err
	}
	return s.dropLegacyIntent()
}

func (s *Store) clearIntent() error {
	s.intentMu.Lock()
	defer s.intentMu.Unlock()
	return s.clearIntentLocked()
}

func (s *Store) clearIntentLocked() error {
	if _, err := s.intent.WriteAt(make([]byte, intentHeader), 0); err != nil {
		return fmt.Errorf("clear intent: %w", err)
	}
	return nil
}

// dropLegacyIntent deletes an intent a leafd before the intent file
// journaled inside the database, if one is there.
func (s *Store) dropLegacyIntent() error {
	var has bool
	s.db.View(func(tx *bolt.Tx) error { has = tx.Bucket(bucketMeta).Get(keyIntent) != nil; return nil })
	if !has {
		return nil
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyIntent) })
}

// OpenIntent returns the journaled intent of an apply that never
// committed, or nil. An intent from another boot is dropped: the kernel
// objects it was changing went with that boot (see Intent). So is one
// whose header or checksum does not hold: leafd died writing it, before
// touching the kernel.
func (s *Store) OpenIntent() (*Intent, error) {
	s.intentMu.Lock()
	defer s.intentMu.Unlock()
	var head [intentHeader]byte
	n, err := s.intent.ReadAt(head[:], 0)
	if n < intentHeader || binary.LittleEndian.Uint32(head[0:]) != intentMagic {
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read intent: %w", err)
		}
		return s.legacyIntent()
	}
	size := binary.LittleEndian.Uint32(head[4:])
	if size > maxIntentSize {
		return nil, s.clearIntentLocked()
	}
	body := make([]byte, size)
	if _, err := s.intent.ReadAt(body, intentHeader); err != nil || crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(head[8:]) {
		return nil, s.clearIntentLocked()
	}
	var in intentOnDisk
	if json.Unmarshal(body, &in) != nil || in.BootID != s.bootID {
		return nil, s.clearIntentLocked()
	}
	return &in.Intent, nil
}

// maxIntentSize bounds what OpenIntent reads: a desired state at its
// document limits is far smaller.
const maxIntentSize = 64 << 20

// legacyIntent reads an intent a leafd before the intent file journaled
// inside the database (an upgrade while an apply was interrupted).
func (s *Store) legacyIntent() (*Intent, error) {
	var in *Intent
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keyIntent)
		if v == nil {
			return nil
		}
		in = &Intent{}
		return json.Unmarshal(v, in)
	})
	if err != nil {
		return nil, fmt.Errorf("read intent: %w", err)
	}
	return in, nil
}

// Commit replaces the desired state and all records in one transaction,
// then clears the open intent.
func (s *Store) Commit(st *desired.State, records map[string]*Record) error {
	doc, err := json.Marshal(st)
	if err != nil {
		return err
	}
	// Read back as decoded, not as given: the next Records decodes them.
	s.dropRecords()
	defer s.dropRecords()
	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketMeta).Put(keyDesired, doc); err != nil {
			return err
		}
		if err := tx.Bucket(bucketMeta).Delete(keyIntent); err != nil {
			return err
		}
		if err := tx.DeleteBucket(bucketAttachments); err != nil {
			return err
		}
		b, err := tx.CreateBucket(bucketAttachments)
		if err != nil {
			return err
		}
		for name, r := range records {
			v, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(name), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Only once the commit is durable: a death in between leaves an
	// intent of the very document committed, which start-up applies again.
	return s.clearIntent()
}

// RecordStream is a declared ring or perf buffer and the BTF of its
// record type (raw BTF of the struct and what it uses), taken from the
// object at apply time.
type RecordStream struct {
	manifest.Records
	BTF []byte `json:"btf,omitempty"`
}

// dropRecords forgets the decoded records and stops reads in flight from
// keeping theirs.
func (s *Store) dropRecords() {
	s.mu.Lock()
	s.records = nil
	s.gen++
	s.mu.Unlock()
}

// SetBPFStats records whether BPF statistics were turned on through the
// API, so that a restart turns them on again (and, chain members
// counting their runs only while they are on, reloads nothing).
func (s *Store) SetBPFStats(on bool) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if !on {
			return tx.Bucket(bucketMeta).Delete(keyBPFStats)
		}
		return tx.Bucket(bucketMeta).Put(keyBPFStats, []byte("on"))
	})
}

// BPFStats reports what SetBPFStats last recorded.
func (s *Store) BPFStats() (bool, error) {
	var on bool
	err := s.db.View(func(tx *bolt.Tx) error {
		on = tx.Bucket(bucketMeta).Get(keyBPFStats) != nil
		return nil
	})
	return on, err
}
