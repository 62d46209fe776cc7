package signature

import (
	"crypto/rand"
	"time"
)

var (
	randReader = rand.Reader
	// timeZero leaves a trusted key without a validity window: keys are
	// trusted for as long as the policy lists them.
	timeZero time.Time
)
