from django.urls import path

from shop import views

urlpatterns = [
    path("health/", views.health),
    path("info/", views.info),
    path("orders/", views.orders),
    path("stream/", views.stream),
    path("slow/", views.slow),
    path("cached/", views.cached),
    path("aslow/", views.aslow),
    path("cities/", views.cities),
    path("categories/", views.categories),
    path("touch/", views.touch),
    path("hooks/", views.hooks),
    path("cacheloop/", views.cacheloop),
    path("paged/", views.paged),
    path("versioned/", views.versioned),
    path("cpu/", views.cpu),
]
