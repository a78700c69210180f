package pubsub_test

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"github.com/strata-go/strata/pubsub"
)

type BookRoom struct {
	RoomID string `json:"room_id"`
	Guest  string `json:"guest"`
}

type RoomBooked struct {
	RoomID string `json:"room_id"`
	Guest  string `json:"guest"`
}

// Watermill's CQRS component on Postgres alone: a command bus and an event
// bus publishing through a pubsub.Publisher, command and event processors
// consuming through pubsub.Subscribers (one consumer group per handler).
// The command handler writes its read model and publishes its event in one
// transaction.
func Example_cqrs() {
	store, cleanup := exampleStore()
	defer cleanup()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := store.Pool()
	bookings := store.Table("bookings")
	if _, err := pool.Exec(ctx, `CREATE TABLE `+bookings+` (room_id text PRIMARY KEY, guest text)`); err != nil {
		panic(err)
	}

	pub, err := pubsub.NewPublisher(store, nil)
	if err != nil {
		panic(err)
	}
	subscriber := func(group string) (message.Subscriber, error) {
		return pubsub.NewSubscriber(store, &pubsub.SubscriberConfig{ConsumerGroup: group})
	}
	marshaler := cqrs.JSONMarshaler{}
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		panic(err)
	}

	commandBus, err := cqrs.NewCommandBusWithConfig(pub, cqrs.CommandBusConfig{
		GeneratePublishTopic: func(p cqrs.CommandBusGeneratePublishTopicParams) (string, error) {
			return "commands." + p.CommandName, nil
		},
		Marshaler: marshaler,
	})
	if err != nil {
		panic(err)
	}
	eventBus, err := cqrs.NewEventBusWithConfig(pub, cqrs.EventBusConfig{
		GeneratePublishTopic: func(p cqrs.GenerateEventPublishTopicParams) (string, error) {
			return "events." + p.EventName, nil
		},
		Marshaler: marshaler,
	})
	if err != nil {
		panic(err)
	}
	commands, err := cqrs.NewCommandProcessorWithConfig(router, cqrs.CommandProcessorConfig{
		GenerateSubscribeTopic: func(p cqrs.CommandProcessorGenerateSubscribeTopicParams) (string, error) {
			return "commands." + p.CommandName, nil
		},
		SubscriberConstructor: func(p cqrs.CommandProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return subscriber(p.HandlerName)
		},
		Marshaler: marshaler,
	})
	if err != nil {
		panic(err)
	}
	events, err := cqrs.NewEventProcessorWithConfig(router, cqrs.EventProcessorConfig{
		GenerateSubscribeTopic: func(p cqrs.EventProcessorGenerateSubscribeTopicParams) (string, error) {
			return "events." + p.EventName, nil
		},
		SubscriberConstructor: func(p cqrs.EventProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return subscriber(p.HandlerName)
		},
		Marshaler: marshaler,
	})
	if err != nil {
		panic(err)
	}

	err = commands.AddHandlers(cqrs.NewCommandHandler("book-room", func(ctx context.Context, cmd *BookRoom) error {
		// The read-model row and the event commit together, or neither.
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO `+bookings+` VALUES ($1, $2)`, cmd.RoomID, cmd.Guest); err != nil {
				return err
			}
			return eventBus.Publish(pubsub.ContextWithTx(ctx, tx), &RoomBooked{RoomID: cmd.RoomID, Guest: cmd.Guest})
		})
	}))
	if err != nil {
		panic(err)
	}
	done := make(chan struct{})
	err = events.AddHandlers(cqrs.NewEventHandler("send-confirmation", func(ctx context.Context, ev *RoomBooked) error {
		fmt.Printf("room %s booked for %s\n", ev.RoomID, ev.Guest)
		close(done)
		return nil
	}))
	if err != nil {
		panic(err)
	}

	go func() { _ = router.Run(ctx) }()
	<-router.Running()
	if err := commandBus.Send(ctx, &BookRoom{RoomID: "42", Guest: "Ann"}); err != nil {
		panic(err)
	}
	<-done
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+bookings).Scan(&n); err != nil {
		panic(err)
	}
	fmt.Println("bookings:", n)
	_ = router.Close()
	// Output:
	// room 42 booked for Ann
	// bookings: 1
}
