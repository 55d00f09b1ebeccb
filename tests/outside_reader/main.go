// A reader of sandan's Kafka topics built only from standard parts: franz-go's Confluent
// Serde (magic byte 0, 4-byte schema id) with its schema-registry client, and hamba/avro.
// Nothing of sandan's: the schemas come from the registry by the ids in the records.
// It reads a topic from the beginning until it has -n records and prints one JSON line each:
// {"key": ..., "id": schema id, "value": the record as Avro decodes it}.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:19092", "Kafka bootstrap servers")
	registry := flag.String("registry", "http://127.0.0.1:18081/apis/ccompat/v7", "schema registry URL")
	topic := flag.String("topic", "", "topic to read")
	n := flag.Int("n", 1, "records to read before stopping")
	timeout := flag.Duration("timeout", 30*time.Second, "give up after this long")
	flag.Parse()
	if err := run(*brokers, *registry, *topic, *n, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "outside-reader:", err)
		os.Exit(1)
	}
}

func run(brokers, registry, topic string, n int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	schemas, err := sr.NewClient(sr.URLs(registry))
	if err != nil {
		return err
	}
	client, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return err
	}
	defer client.Close()
	var serde sr.Serde
	out := json.NewEncoder(os.Stdout)
	for read := 0; read < n; {
		fetches := client.PollFetches(ctx)
		if ctx.Err() != nil {
			return fmt.Errorf("read %d of %d records before the timeout", read, n)
		}
		if errs := fetches.Errors(); len(errs) > 0 {
			return errs[0].Err
		}
		for _, rec := range fetches.Records() {
			id, _, err := serde.DecodeID(rec.Value)
			if err != nil {
				return fmt.Errorf("offset %d: %w", rec.Offset, err)
			}
			if !serde.IsRegistered(id) {
				// First record with this id: its writer's schema from the registry.
				text, err := schemas.SchemaByID(ctx, id)
				if err != nil {
					return fmt.Errorf("schema id %d: %w", id, err)
				}
				schema, err := avro.Parse(text.Schema)
				if err != nil {
					return fmt.Errorf("schema id %d: %w", id, err)
				}
				serde.Register(id, map[string]any{}, sr.DecodeFn(func(b []byte, v any) error {
					return avro.Unmarshal(schema, b, v)
				}))
			}
			value := map[string]any{}
			if err := serde.Decode(rec.Value, &value); err != nil {
				return fmt.Errorf("offset %d: %w", rec.Offset, err)
			}
			if err := out.Encode(map[string]any{"key": string(rec.Key), "id": id, "value": value}); err != nil {
				return err
			}
			read++
		}
	}
	return nil
}
