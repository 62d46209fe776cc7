//go:build !linux

package main

import "github.com/spf13/cobra"

// tokenKeygenCmd is absent where leafd cannot run: the key lives on
// leafd's (Linux) host.
func tokenKeygenCmd(*globals) *cobra.Command { return nil }
