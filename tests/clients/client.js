#!/usr/bin/env node
// A client of the peershare local API written the way EchoChain's Node.js client is:
// `net.connect`, one `write` of the JSON request (no trailing newline, the connection left
// open), then the FIRST `data` event is taken as the whole reply and parsed with JSON.parse.
//
// Usage: node client.js HOST PORT 'REQUEST_JSON'
// Prints the parsed reply as one JSON line on stdout and `received N bytes` on stderr.
// Exit status: 0 when a reply was received and parsed, 1 otherwise.
'use strict';
const net = require('net');

const [host, port, request] = process.argv.slice(2);
if (request === undefined) {
  console.error('usage: node client.js HOST PORT REQUEST_JSON');
  process.exit(2);
}

const client = net.connect({ host, port: Number(port) }, () => {
  client.write(JSON.stringify(JSON.parse(request)));
});
// A bound for the test suite; EchoChain's client waits as long as the node takes.
client.setTimeout(120000, () => fail('no reply within 120 s'));

client.once('data', (data) => {
  console.error(`received ${data.length} bytes`);
  let reply;
  try {
    reply = JSON.parse(data.toString('utf8'));
  } catch (e) {
    fail(`the reply is not one JSON object (${e.message}): ${data.toString('utf8', 0, 200)}`);
  }
  console.log(JSON.stringify(reply));
  client.destroy();
});
client.on('error', (e) => fail(e.message));
client.on('end', () => fail('the node closed the connection without replying'));

function fail(why) {
  console.error(`error: ${why}`);
  process.exit(1);
}
