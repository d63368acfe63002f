// Package layering holds no code: its test checks that imports between
// sekisho's packages point the way DESIGN.md says (cmd → proxy → identity,
// policy, guard, audit, ledger → sqlscope, mask, store), so a shortcut
// across the layers fails CI instead of growing unnoticed.
package layering
