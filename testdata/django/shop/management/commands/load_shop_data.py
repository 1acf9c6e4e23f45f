"""Creates the schema (migrate) and loads deterministic fixture data:
50 customers and 20,000 orders by default. Idempotent: when the tables already
hold exactly the expected data set it does nothing; otherwise it replaces it."""
import datetime
import random
from decimal import Decimal

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from shop.models import Customer, Order

CITIES = ["Lisbon", "Oslo", "Kraków", "Dublin", "Tallinn", "Ljubljana", "Porto"]
STATUSES = ["new", "paid", "paid", "shipped", "shipped", "shipped", "cancelled"]
EPOCH = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)


class Command(BaseCommand):
    help = "Migrate and load the shop's fixture data (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--customers", type=int, default=50)
        parser.add_argument("--orders", type=int, default=20000)

    def handle(self, *args, **opts):
        call_command("migrate", interactive=False, verbosity=0)
        n_customers, n_orders = opts["customers"], opts["orders"]
        last = "ORD-%06d" % n_orders
        if (
            Customer.objects.count() == n_customers
            and Order.objects.count() == n_orders
            and Order.objects.filter(number=last).exists()
        ):
            self.stdout.write(
                "shop data already loaded (%d customers, %d orders)"
                % (n_customers, n_orders)
            )
            return
        rng = random.Random(42)
        with transaction.atomic():
            Order.objects.all().delete()
            Customer.objects.all().delete()
            customers = Customer.objects.bulk_create(
                [
                    Customer(
                        name="Customer %02d" % i,
                        email="customer%02d@example.com" % i,
                        city=CITIES[i % len(CITIES)],
                        created=EPOCH + datetime.timedelta(days=i),
                    )
                    for i in range(1, n_customers + 1)
                ]
            )
            if customers[0].pk is None:  # backends without RETURNING
                customers = list(Customer.objects.order_by("id"))
            batch = []
            for i in range(1, n_orders + 1):
                batch.append(
                    Order(
                        customer=customers[rng.randrange(n_customers)],
                        number="ORD-%06d" % i,
                        total=Decimal(rng.randrange(100, 100000)) / 100,
                        status=rng.choice(STATUSES),
                        created=EPOCH + datetime.timedelta(minutes=17 * i),
                        note="" if i % 5 else "gift wrap, please",
                    )
                )
                if len(batch) == 2000:
                    Order.objects.bulk_create(batch)
                    batch = []
            Order.objects.bulk_create(batch)
        self.stdout.write(
            "loaded %d customers and %d orders" % (n_customers, n_orders)
        )
