package server

import (
	"net/http"
	"net/http/pprof"

	v1 "github.com/leaf-ebpf/leaf/api/v1"
	"github.com/leaf-ebpf/leaf/internal/auth"
)

// route is one endpoint and the role it needs.
type route struct {
	// method is empty for endpoints that take any method.
	method, path string
	// role is what the endpoint needs.
	role auth.Role
	// dryRunRole, if not None, is what the endpoint needs when called with
	// ?dryRun=true: planning changes nothing, so an operator may do it.
	dryRunRole auth.Role
	handler    http.HandlerFunc
}

// routes is THE table of every endpoint leafd serves and the role each
// needs. Nothing is served that is not listed here, and the tests walk
// this table (see routes_test.go and e2e/auth_test.go).
//
// Roles: reader reads; operator may also plan (dry runs) and switch BPF
// statistics, which never changes what programs run; admin changes what
// runs and manages tokens and the debug endpoints.
func (s *Server) routes() []route {
	R, O, A := auth.Reader, auth.Operator, auth.Admin
	return []route{
		{"GET", v1.PathHealth, auth.None, auth.None, s.health},
		{"GET", v1.PathReady, auth.None, auth.None, s.getReady},
		{"GET", v1.PathEvents, R, auth.None, s.getEvents},
		// Anyone who reaches leafd may ask how it sees them, even with no
		// role: that is how a caller finds out why everything else is 403.
		{"GET", v1.PathWhoami, auth.None, auth.None, s.whoami},
		{"GET", v1.PathState, R, auth.None, s.getState},
		{"PUT", v1.PathState, A, O, s.putState},
		{"GET", v1.PathStatus, R, auth.None, s.getStatus},
		{"DELETE", v1.PathAttachments + "/{name}", A, O, s.deleteAttachment},
		{"GET", v1.PathAttachments + "/{name}/maps", R, auth.None, s.listMaps},
		{"GET", v1.PathAttachments + "/{name}/maps/{map}", R, auth.None, s.dumpMap},
		// Tailing consumes a ring buffer's records (a companion reading
		// the same map misses them): operator, like other calls that
		// change what others observe without changing what runs.
		{"GET", v1.PathAttachments + "/{name}/maps/{map}/records", O, auth.None, s.tailMap},
		{"GET", v1.PathPackages, R, auth.None, s.listPackages},
		{"GET", v1.PathStats, R, auth.None, s.getStats},
		{"PUT", v1.PathStats, O, auth.None, s.putStats},
		{"GET", v1.PathTokens, A, auth.None, s.listTokens},
		{"POST", v1.PathTokens, A, auth.None, s.issueToken},
		{"DELETE", v1.PathTokens + "/{id}", A, auth.None, s.revokeToken},
		// The web console's files; what it shows and changes goes through
		// the endpoints above, with the caller's role.
		{"GET", v1.PathConsole, R, auth.None, s.console},
		{"GET", v1.PathHistory, R, auth.None, s.getHistory},
		{"GET", v1.PathCerts, R, auth.None, s.getCertificates},
		// l3afd's API (internal/l3af), for controllers written for l3afd.
		{"POST", l3afPrefix + "/add", A, O, s.l3afAdd()},
		{"POST", l3afPrefix + "/update", A, O, s.l3afUpdate()},
		{"POST", l3afPrefix + "/delete", A, O, s.l3afDelete()},
		{"GET", l3afPrefix, R, auth.None, s.l3afGet},
		{"GET", l3afPrefix + "/{iface}", R, auth.None, s.l3afGet},
		{"PUT", l3afPrefix + "/restart", A, auth.None, s.l3afRestart},
		// Profiles expose memory contents and cost CPU: admin only.
		{"", v1.PathDebug, A, auth.None, pprof.Index},
		{"", v1.PathDebug + "cmdline", A, auth.None, pprof.Cmdline},
		{"", v1.PathDebug + "profile", A, auth.None, pprof.Profile},
		{"", v1.PathDebug + "symbol", A, auth.None, pprof.Symbol},
		{"", v1.PathDebug + "trace", A, auth.None, pprof.Trace},
		// Anything else: 404, with JSON like every other answer.
		{"", "/", auth.None, auth.None, s.notFound},
	}
}

// need returns the role a request needs on rt.
func (rt route) need(r *http.Request) auth.Role {
	if rt.dryRunRole != auth.None {
		// An unparsable dryRun falls back to the full role; the handler
		// then answers 400.
		if dry, err := boolQuery(r, "dryRun"); err == nil && dry {
			return rt.dryRunRole
		}
	}
	return rt.role
}

func (rt route) pattern() string {
	if rt.method == "" {
		return rt.path
	}
	return rt.method + " " + rt.path
}

// Endpoint is a route of the table, for tests and documentation.
type Endpoint struct {
	Method, Path     string
	Role, DryRunRole auth.Role
}

// Endpoints lists the table.
func Endpoints() []Endpoint {
	var out []Endpoint
	for _, rt := range (&Server{}).routes() {
		out = append(out, Endpoint{Method: rt.method, Path: rt.path, Role: rt.role, DryRunRole: rt.dryRunRole})
	}
	return out
}
