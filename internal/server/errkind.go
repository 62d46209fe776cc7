package server

import (
	"net/http"

	"github.com/leaf-ebpf/leaf/internal/desired"
)

// Kinds of error answers that never reach a document; the rest are the
// desired.Kind constants, with "invalid" for a problem with the document.
const (
	kindInvalid         = "invalid"
	kindBadRequest      = "bad-request"
	kindUnauthenticated = "unauthenticated"
	kindForbidden       = "forbidden"
	kindRateLimited     = "rate-limited"
)

// kindStatus is the one place an error's kind becomes a status code
// (docs/api.md, "Errors"). Everything a client can fix by changing the
// document or the packages it names is 422, told apart by kind; the
// other codes say who else must act: 409 someone else's program, 413 a
// limit, 503 a repository, 500 leafd.
func kindStatus(kind string) int {
	switch kind {
	case desired.KindConflict:
		return http.StatusConflict
	case desired.KindLimit:
		return http.StatusRequestEntityTooLarge
	case desired.KindUnavailable:
		return http.StatusServiceUnavailable
	case desired.KindInternal:
		return http.StatusInternalServerError
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

// statusKind is the kind of an error answer that carries no kind of its
// own: the status code says it all.
func statusKind(code int) string {
	switch code {
	case http.StatusBadRequest:
		return kindBadRequest
	case http.StatusUnauthorized:
		return kindUnauthenticated
	case http.StatusForbidden:
		return kindForbidden
	case http.StatusNotFound:
		return desired.KindNotFound
	case http.StatusConflict:
		return desired.KindConflict
	case http.StatusRequestEntityTooLarge:
		return desired.KindLimit
	case http.StatusTooManyRequests:
		return kindRateLimited
	case http.StatusServiceUnavailable:
		return desired.KindUnavailable
	case http.StatusUnprocessableEntity:
		return kindInvalid
	}
	return desired.KindInternal
}
