// Package e2e holds guardctl's heavy end-to-end tests: they build the real
// binary once (TestMain) and drive it as separate processes, killed at
// random moments, run side by side, on a pseudo-terminal, under Ansible,
// under Wine (the Windows build), and through the migration guide
// (docs/migrate.md). A test that needs a tool or root skips, naming it,
// where they are missing, and fails under CI (CI=true); see
// internal/testenv. The package has no code of its own outside its tests.
package e2e
