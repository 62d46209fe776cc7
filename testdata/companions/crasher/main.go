// Command crasher is a test companion that dies at once.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Println("crasher: giving up")
	os.Exit(3)
}
