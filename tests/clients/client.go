// A client of the peershare local API written the way EchoChain's Go client is: net.Dial,
// one Write of the JSON request (no trailing newline, the connection left open), then ONE
// Read into a 4096-byte buffer, parsed with json.Unmarshal. With a fourth argument `line`,
// it reads the reply with bufio.Reader.ReadBytes('\n') instead (the robust way: any size).
//
// Standard library only, so it builds offline: go build -o client client.go
//
// Usage: client HOST PORT 'REQUEST_JSON' [line]
// Prints the parsed reply as one JSON line on stdout and `received N bytes` on stderr.
// Exit status: 0 when a reply was received and parsed, 1 otherwise.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"time"
)

func fail(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "error: "+format+"\n", a...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: client HOST PORT REQUEST_JSON [line]")
		os.Exit(2)
	}
	var request map[string]interface{}
	if err := json.Unmarshal([]byte(os.Args[3]), &request); err != nil {
		fail("the request is not a JSON object: %v", err)
	}
	body, err := json.Marshal(request)
	if err != nil {
		fail("%v", err)
	}

	conn, err := net.Dial("tcp", net.JoinHostPort(os.Args[1], os.Args[2]))
	if err != nil {
		fail("%v", err)
	}
	defer conn.Close()
	// A bound for the test suite; EchoChain's client waits as long as the node takes.
	conn.SetDeadline(time.Now().Add(120 * time.Second))
	if _, err := conn.Write(body); err != nil {
		fail("write: %v", err)
	}

	var data []byte
	if len(os.Args) > 4 && os.Args[4] == "line" {
		data, err = bufio.NewReader(conn).ReadBytes('\n')
	} else {
		buf := make([]byte, 4096)
		var n int
		n, err = conn.Read(buf)
		data = buf[:n]
	}
	if err != nil {
		fail("read: %v", err)
	}
	fmt.Fprintf(os.Stderr, "received %d bytes\n", len(data))

	var reply map[string]interface{}
	if err := json.Unmarshal(data, &reply); err != nil {
		fail("the reply is not one JSON object (%v): %.200q", err, data)
	}
	out, err := json.Marshal(reply)
	if err != nil {
		fail("%v", err)
	}
	fmt.Println(string(out))
}
