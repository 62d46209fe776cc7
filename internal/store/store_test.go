package store

import (
	"encoding/json"
	"testing"

	"github.com/leaf-ebpf/leaf/internal/desired"
)

// TestRecordsFollowCommits: Records reads what the last commit wrote —
// also when it answers from what it decoded before — and a caller's map
// is its own.
func TestRecordsFollowCommits(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	commit := func(progs map[string]uint32) {
		t.Helper()
		recs := map[string]*Record{}
		for n, id := range progs {
			recs[n] = &Record{Name: n, ProgramID: id, MapParams: map[string]any{"ports": []any{json.Number("80")}}}
		}
		if err := s.Commit(desired.Empty(), recs); err != nil {
			t.Fatal(err)
		}
	}
	check := func(want map[string]uint32) map[string]*Record {
		t.Helper()
		got, err := s.Records()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("records %v, want %v", got, want)
		}
		for n, id := range want {
			if got[n] == nil || got[n].ProgramID != id || got[n].MapParams["ports"].([]any)[0] != json.Number("80") {
				t.Errorf("record %s: %+v, want program %d", n, got[n], id)
			}
		}
		return got
	}
	commit(map[string]uint32{"a": 1, "b": 2})
	first := check(map[string]uint32{"a": 1, "b": 2})
	delete(first, "a") // the caller's map
	again := check(map[string]uint32{"a": 1, "b": 2})
	if again["b"] != first["b"] {
		t.Error("an unchanged record was decoded again")
	}
	commit(map[string]uint32{"b": 3, "c": 4})
	check(map[string]uint32{"b": 3, "c": 4})
	s.Close()
	if s, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	check(map[string]uint32{"b": 3, "c": 4})
}
