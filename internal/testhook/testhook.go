// Package testhook holds points where a test binary can stop guardctl at a
// chosen instant (a kill between two steps that are otherwise too close
// together to hit). Every hook is nil, and does nothing, in guardctl itself.
package testhook

// BetweenReplaceRenames runs in the directory store's replace of a guardian
// after the old entry went to the trash and before the new one is renamed
// into place.
var BetweenReplaceRenames func()
