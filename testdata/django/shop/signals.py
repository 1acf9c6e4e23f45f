"""The shop's cache invalidation: the per-city customer counts are deleted
from every cache alias whenever a customer is saved or deleted (the view
caching them is the correctly invalidated one of krait cache's tests)."""
from django.conf import settings
from django.core.cache import caches
from django.db.models.signals import post_delete, post_save

CITIES_KEY = "customer-cities"


def forget_cities(sender, **kwargs):
    for alias in settings.CACHES:
        caches[alias].delete(CITIES_KEY)


def connect():
    from shop.models import Customer

    post_save.connect(forget_cities, sender=Customer, dispatch_uid="shop-forget-cities")
    post_delete.connect(forget_cities, sender=Customer, dispatch_uid="shop-forget-cities-del")
