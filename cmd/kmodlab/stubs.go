package main

import "github.com/spf13/cobra"

func buildCmd() *cobra.Command   { return &cobra.Command{Use: "build"} }
func runCmd() *cobra.Command     { return &cobra.Command{Use: "run"} }
func traceCmd() *cobra.Command   { return &cobra.Command{Use: "trace"} }
func benchCmd() *cobra.Command   { return &cobra.Command{Use: "bench"} }
func runnersCmd() *cobra.Command { return &cobra.Command{Use: "runners"} }
