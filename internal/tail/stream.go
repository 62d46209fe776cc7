package tail

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/manifest"
)

// Source is one map to tail.
type Source struct {
	Attachment, Map string
	// PinPath is the map's pin.
	PinPath string
	// Records is the package's declaration for the map and BTF the
	// record type, as MarshalType kept it (nil: records in hex).
	Records *manifest.Records
	BTF     []byte
}

// Prepare opens the map, a reader on it and the record decoder. Errors
// here are the caller's (not a ring or perf buffer, a record type that
// does not decode); the caller closes the reader.
func Prepare(src Source) (*Reader, *Decoder, error) {
	m, err := ebpf.LoadPinnedMap(src.PinPath, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("open map %s: %w", src.Map, err)
	}
	defer m.Close()
	var dec *Decoder
	if src.Records != nil && len(src.BTF) > 0 {
		spec, err := LoadTypes(src.BTF)
		if err != nil {
			return nil, nil, fmt.Errorf("record type of map %s: %w", src.Map, err)
		}
		if dec, err = NewDecoder(spec, src.Records.Type, src.Records.Formats); err != nil {
			return nil, nil, err
		}
	}
	r, err := Open(m)
	if err != nil {
		return nil, nil, err
	}
	return r, dec, nil
}

// Run reads records until opts says stop or ctx ends and hands each to
// emit, then an end event; flush runs whenever the queue is empty, so a
// fast stream is written in batches. The reading never waits on emit:
// records that find the queue full are dropped and counted lost.
func (s *Stats) Run(ctx context.Context, src Source, r *Reader, dec *Decoder, opts Options, emit func(v1.TailEvent) error, flush func() error) error {
	deadline := time.Now().Add(opts.For)
	ch := make(chan v1.TailEvent, queue)
	var read, lost uint64
	go func() {
		defer close(ch)
		var lostBefore uint64 // kernel losses not yet reported with a record
		for read < uint64(opts.Max) {
			raw, kernelLost, err := r.Read(deadline)
			if err != nil {
				return // deadline, or closed when ctx ended
			}
			if raw == nil {
				// The kernel's notice of records it dropped: counted
				// now, reported with the next record.
				s.Count(src.Attachment, src.Map, 0, kernelLost)
				lost += kernelLost
				lostBefore += kernelLost
				continue
			}
			read++
			ev := v1.TailEvent{Time: time.Now().UTC(), Lost: lostBefore}
			lostBefore = 0
			if dec != nil {
				if ev.Record, err = dec.Decode(raw); err != nil {
					ev.Error = err.Error()
				}
			}
			if ev.Record == nil {
				ev.Raw = hex.EncodeToString(raw)
			}
			s.Count(src.Attachment, src.Map, 1, 0)
			select {
			case ch <- ev:
			default:
				lost++
				s.Count(src.Attachment, src.Map, 0, 1)
			}
		}
	}()
	stop := context.AfterFunc(ctx, func() { r.Close() })
	defer stop()
	var emitErr error
	for ev := range ch {
		if emitErr != nil {
			continue // drain until the reader stops
		}
		if emitErr = emit(ev); emitErr == nil && len(ch) == 0 {
			emitErr = flush()
		}
		if emitErr != nil {
			r.Close() // the client went away: stop reading
		}
	}
	if emitErr != nil {
		return emitErr
	}
	// The reader goroutine has ended: read and lost are final.
	end := v1.TailEvent{Time: time.Now().UTC(), End: &v1.TailEnd{Records: read, Lost: lost}}
	if err := emit(end); err != nil {
		return err
	}
	return flush()
}

// IsBusy says whether err is ErrBusy.
func IsBusy(err error) bool { return errors.Is(err, ErrBusy) }
