package server

import (
	"net/http"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/desired"
)

// Kinds of error answers that never reach a document; the rest are the
// desired.Kind constants, with "invalid" for a problem with the document.
const (
	kindInvalid         = desired.KindInvalid
	kindBadRequest      = v1.ErrorKindBadRequest
	kindUnauthenticated = v1.ErrorKindUnauthenticated
	kindForbidden       = v1.ErrorKindForbidden
	kindRateLimited     = v1.ErrorKindRateLimited
)

// documentStatus is the one place a document error's kind becomes a
// status code (docs/api.md, "Errors"). Everything a client can fix by
// changing the document or the packages it names is 422, told apart by
// kind (not-found, trust, verifier, feature-missing among them); the
// other codes say who else must act: 409 someone else's program, 413 a
// limit, 503 a repository, 500 leafd.
var documentStatus = map[string]int{
	desired.KindConflict:    http.StatusConflict,
	desired.KindLimit:       http.StatusRequestEntityTooLarge,
	desired.KindUnavailable: http.StatusServiceUnavailable,
	desired.KindInternal:    http.StatusInternalServerError,
}

func kindStatus(kind string) int {
	if code, ok := documentStatus[kind]; ok {
		return code
	}
	return http.StatusUnprocessableEntity
}

// apiKind names a desired.Error kind in an answer.
func apiKind(kind string) string {
	if kind == "" {
		return kindInvalid
	}
	return kind
}

// statusKinds are the kinds of error answers that carry no kind of their
// own: the status code says it all. Any other code is internal.
var statusKinds = map[int]string{
	http.StatusBadRequest:            kindBadRequest,
	http.StatusUnauthorized:          kindUnauthenticated,
	http.StatusForbidden:             kindForbidden,
	http.StatusNotFound:              desired.KindNotFound,
	http.StatusConflict:              desired.KindConflict,
	http.StatusRequestEntityTooLarge: desired.KindLimit,
	http.StatusTooManyRequests:       kindRateLimited,
	http.StatusServiceUnavailable:    desired.KindUnavailable,
	http.StatusUnprocessableEntity:   kindInvalid,
}

func statusKind(code int) string {
	if k, ok := statusKinds[code]; ok {
		return k
	}
	return desired.KindInternal
}
