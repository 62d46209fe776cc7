package server

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/reconciler"
	"github.com/leaf-ebpf/leaf/internal/tail"
)

// tailMap streams the records of an attachment's ring buffer or perf
// event array as newline-delimited JSON, decoded from the type the
// package declares, until ?max records (default 100) or ?for seconds
// (default 10) or the client goes away; the last line holds the totals.
func (s *Server) tailMap(w http.ResponseWriter, r *http.Request) {
	if s.Tail == nil {
		writeError(w, http.StatusNotFound, errors.New("tail is not available"))
		return
	}
	opts, err := tailOptions(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	src, err := s.tailSource(r.PathValue("name"), r.PathValue("map"))
	if err != nil {
		writeLookupError(w, err)
		return
	}
	release, err := s.Tail.Acquire(src.Attachment, src.Map)
	if err != nil {
		writeError(w, http.StatusConflict, err)
		return
	}
	defer release()
	rd, dec, err := tail.Prepare(src)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, err)
		return
	}
	defer rd.Close()
	ctx, cancel, rc := s.startStream(w, r)
	defer cancel()
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	s.Tail.Run(ctx, src, rd, dec, opts, func(ev v1.TailEvent) error {
		rc.SetWriteDeadline(time.Now().Add(time.Minute))
		return enc.Encode(ev)
	}, func() error {
		if err := bw.Flush(); err != nil {
			return err
		}
		return rc.Flush()
	})
}

func tailOptions(r *http.Request) (tail.Options, error) {
	o := tail.Options{Max: tail.DefaultMax, For: tail.DefaultFor}
	q := r.URL.Query()
	if v := q.Get("max"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > tail.MaxRecords {
			return o, fmt.Errorf("max %q: want 1 to %d records", v, tail.MaxRecords)
		}
		o.Max = n
	}
	if v := q.Get("for"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > tail.MaxFor {
			return o, fmt.Errorf("for %q: want a duration up to %s", v, tail.MaxFor)
		}
		o.For = d
	}
	return o, nil
}

// tailSource finds the attachment's map and the package's declaration.
func (s *Server) tailSource(attachment, name string) (tail.Source, error) {
	objs, err := s.Reconciler.Objects()
	if err != nil {
		return tail.Source{}, err
	}
	for _, o := range objs {
		if o.Attachment != attachment {
			continue
		}
		path, ok := o.Maps[name]
		if !ok {
			return tail.Source{}, fmt.Errorf("%w: attachment %q has no map %q", reconciler.ErrUnknownMap, attachment, name)
		}
		src := tail.Source{Attachment: attachment, Map: name, PinPath: path}
		for i := range o.Records {
			if o.Records[i].Map == name {
				src.Records, src.BTF = &o.Records[i].Records, o.Records[i].BTF
			}
		}
		return src, nil
	}
	return tail.Source{}, fmt.Errorf("%w: %q", reconciler.ErrUnknownAttachment, attachment)
}
