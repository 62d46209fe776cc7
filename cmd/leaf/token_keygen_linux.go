package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/leaf-ebpf/leaf/internal/auth/token"
)

// tokenKeygenCmd writes leafd's signing key. leafd runs only on Linux, so
// the command exists only there and other builds of leaf stay clients.
func tokenKeygenCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "keygen FILE",
		Short: "Write a new Ed25519 token signing key (mode 0600); replacing leafd's key file rotates the key and invalidates every older token",
		Args:  cobra.ExactArgs(1),
		// Runs on leafd's host, as leafd's user; it does not talk to leafd.
		PersistentPreRunE: noConnect,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := token.GenerateKeyFile(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "wrote %s (key ID %s)\n", args[0], id)
			return nil
		},
	}
}
