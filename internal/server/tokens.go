package server

import (
	"errors"
	"fmt"
	"net/http"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/auth"
	"github.com/leaf-ebpf/leaf/internal/auth/token"
	"github.com/leaf-ebpf/leaf/internal/store"
	"github.com/leaf-ebpf/leaf/internal/yamljson"
)

var errTokensOff = errors.New("tokens are not enabled on this leafd: set tokens.keyFile or tokens.keyCredential in its config")

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	if s.Tokens == nil {
		writeError(w, http.StatusNotFound, errTokensOff)
		return
	}
	list, err := s.Tokens.List()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) issueToken(w http.ResponseWriter, r *http.Request) {
	if s.Tokens == nil {
		writeError(w, http.StatusNotFound, errTokensOff)
		return
	}
	req, err := decodeTokenRequest(w, r)
	if err != nil {
		writeError(w, bodyErrorCode(err), err)
		return
	}
	issued, err := s.Tokens.Issue(req)
	if errors.Is(err, token.ErrBadRequest) {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if err != nil {
		s.Logger.Error("issue token", "error", err)
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	id := auth.IdentityFrom(r.Context())
	// The token ID stays out of info-level logs: it is half of what a
	// forger needs (the other half being the key), and logs travel far.
	s.Logger.Info("token issued", "token_subject", issued.Info.Subject, "token_role", issued.Info.Role,
		"expires_at", issued.Info.ExpiresAt, "by", id.Subject)
	s.Logger.Debug("token issued", "token_id", issued.Info.ID)
	writeJSON(w, http.StatusCreated, issued)
}

// decodeTokenRequest reads a token request body strictly (unknown fields
// are errors).
func decodeTokenRequest(w http.ResponseWriter, r *http.Request) (v1.TokenRequest, error) {
	var req v1.TokenRequest
	body, err := readBody(w, r, 4096)
	if err != nil {
		return req, err
	}
	if err := yamljson.Decode(body, &req); err != nil {
		return req, fmt.Errorf("token request: %w", err)
	}
	return req, nil
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	if s.Tokens == nil {
		writeError(w, http.StatusNotFound, errTokensOff)
		return
	}
	info, err := s.Tokens.Revoke(r.PathValue("id"))
	if errors.Is(err, store.ErrUnknownToken) {
		writeError(w, http.StatusNotFound, err)
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	s.Logger.Info("token revoked", "token_subject", info.Subject, "by", auth.IdentityFrom(r.Context()).Subject)
	s.Logger.Debug("token revoked", "token_id", info.ID)
	writeJSON(w, http.StatusOK, info)
}
