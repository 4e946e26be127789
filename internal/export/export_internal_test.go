package export

// SetChunkHook makes every streamed file call f after each chunk written (tests only); the returned function
// removes it.
func SetChunkHook(f func(name string)) func() {
	testHookChunk = f
	return func() { testHookChunk = nil }
}
