"""HTTP routes."""

from django.urls import path

from echosite import views

urlpatterns = [
    path("", views.index, name="index"),
]
