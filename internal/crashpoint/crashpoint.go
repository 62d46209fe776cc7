// Package crashpoint names the step boundaries of an apply, so that a test
// build of leafd can die at each one and the crash-injection tests can
// check that start-up completes or undoes what was under way.
//
// In a normal build Hit does nothing. Built with the leafcrash tag, leafd
// reads LEAF_CRASH_AT=<point>[:<n>] and kills itself with SIGKILL at the
// n-th (default first) time it passes that point; LEAF_CRASH_LOG=<file>
// appends each point passed to a file, so a test can list them.
package crashpoint

// The step boundaries of an apply.
const (
	IntentWritten = "intent-written"  // the journal entry is on disk
	Loaded        = "loaded"          // a program and its maps are loaded
	Attached      = "attached"        // a new link holds a hook
	ParamsWritten = "params-written"  // map parameters were written
	PinStaged     = "pin-staged"      // new pins wait in staging
	PinMovedAside = "pin-moved-aside" // the old pins were renamed aside
	PinSwapped    = "pin-swapped"     // the new pins were renamed in
	LinkUpdated   = "link-updated"    // bpf_link_update swapped a program
	ChainWired    = "chain-wired"     // a fresh member's next map was set
	HookSwitched  = "hook-switched"   // a hook now runs its new chain
	Retired       = "retired"         // old pins were removed
	Deleted       = "deleted"         // a deleted attachment's pins went
	BeforeCommit  = "before-commit"   // everything applied, not recorded
	AfterCommit   = "after-commit"    // recorded, intent closed
	RecoveredPins = "recovered-pins"  // start-up tidied staging pins
)

// Points lists every point, for tests that walk them all.
var Points = []string{
	IntentWritten, Loaded, Attached, ParamsWritten, PinStaged, PinMovedAside, PinSwapped,
	LinkUpdated, ChainWired, HookSwitched, Retired, Deleted, BeforeCommit, AfterCommit, RecoveredPins,
}
