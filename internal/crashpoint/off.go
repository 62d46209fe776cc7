//go:build !leafcrash

package crashpoint

// Hit marks a step boundary; without the leafcrash build tag it does
// nothing.
func Hit(string) {}
