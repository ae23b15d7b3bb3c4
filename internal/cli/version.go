package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/podid/podid/internal/version"
)

func newVersionCommand(streams Streams) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print podid's version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintln(streams.Out, version.String("podid"))
			return err
		},
	}
}
